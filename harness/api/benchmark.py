"""The benchmark contract: what a benchmark supplies, and nothing of the run lifecycle.

The engine (``harness.engine``) owns everything that is the same for every benchmark: the run folder, its
lock and manifest, the run's identity, statuses, content-keyed resume, batch planning, ranks and shards,
record files, merge, scoring manifests, the store and progress. A benchmark supplies only its own parts:

* **planning**: :meth:`Benchmark.plan` turns its config and a model into a :class:`Plan` (the items, the
  work units, the run's identity); :meth:`Benchmark.prepare` writes its input files into the run folder;
* **generation**: :meth:`Benchmark.image_path` and :meth:`Benchmark.generate` (one batch of units through
  the model);
* **scoring**: :meth:`Benchmark.build_scorer`, :meth:`Benchmark.score_plan` (the scoring stages over the
  generated or discovered images), :meth:`Benchmark.discover` (a folder made by anyone) and
  :meth:`Benchmark.plan_from_run` (a folder made by ``harness run``);
* **results**: the pure :meth:`Benchmark.summarize`, the official-format files (:meth:`Benchmark.write_results`),
  store rows, its terminal table;
* **comparison and reports** (from :class:`~harness.api.reporting.Reportable`): the per-item paired scores,
  ``higher_is_better``, the default regression threshold, its report section.

A benchmark plugin registers its class under the entry-point group ``harness.benchmarks``; it then gets
``harness run/score/merge``, resume, ranks and shards, ``report``, ``compare`` and ``nightly`` unchanged.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from harness.api.reporting import Reportable
from harness.api.scorer import Scorer
from harness.core.errors import HarnessError
from harness.core.hashing import content_hash
from harness.core.options import build_config

if TYPE_CHECKING:
    from PIL import Image

    from harness.api.model import FailedImage, ImageModel

Record = dict[str, Any]


class Item(Protocol):
    """One prompt or case of a benchmark: its id is a safe path component, unique in its set."""

    @property
    def id(self) -> str: ...


@dataclass(frozen=True)
class WorkUnit:
    """One image to produce: (benchmark, item id, item content hash, sample index, seed, model hash)."""

    benchmark: str
    item_id: str
    item_sha: str
    sample_index: int
    seed: int
    model_hash: str

    @property
    def key(self) -> str:
        """Content key: the same for the same work whatever process, rank or world size runs it."""
        from dataclasses import asdict

        return content_hash(asdict(self), 24)


@dataclass
class Plan:
    """What a run makes: its identity (``config``, whose hash is the run id), items and work units."""

    config: dict[str, Any]
    items: Sequence[Any]
    units: list[WorkUnit]
    batch_size: int
    #: written into run.json's provenance next to the plugins' (e.g. where source images came from)
    provenance: dict[str, Any] = field(default_factory=dict)
    #: the benchmark's own loaded data (e.g. a case set), for its generate/score steps
    context: Any = None

    @property
    def run_id_hash(self) -> str:
        return content_hash(self.config, 12)


@dataclass(frozen=True)
class Sample:
    """One image to score: its path, its name relative to the image folder, its item and sha256.

    ``failure`` is set (and ``path`` does not exist) for a unit the model could not make: the benchmark scores
    it as failed, with that reason, rather than leaving it out."""

    path: Path
    name: str
    item_id: str
    sha256: str
    failure: str | None = None


@dataclass
class Discovery:
    """What a folder made by anyone holds: the items it answers, the samples, and what was skipped."""

    items: Sequence[Any]
    samples: list[Sample]
    #: summary fields about the folder (skipped files, prompts with fewer images, ...)
    extra: dict[str, Any] = field(default_factory=dict)
    #: where the benchmark's data came from (e.g. source images), recorded with the results
    provenance: dict[str, Any] = field(default_factory=dict)


class Keyed(Protocol):
    """A scoring unit: its content key (resume) and a name a person recognises (error messages)."""

    @property
    def key(self) -> str: ...

    @property
    def name(self) -> str: ...


@dataclass
class Stage:
    """One resumable scoring stage: its units, how a batch is processed, and its record-file prefix.

    ``is_final(record)`` says whether a recorded unit is done for good (a judge failure is not: a rerun
    retries it); None: every recorded unit is. ``whole_batches`` reruns every unit of a batch that has any
    unit left (batched numerics then never depend on what was done before); otherwise only the units left
    are processed.
    ``live_progress`` passes a ``tick(n)`` callback to ``process`` for units finishing one by one.
    """

    log_name: str
    units: Sequence[Any]
    process: Callable[..., list[Record]]
    batch_size: int
    #: a unit's content key (default: its ``key`` attribute); records without a ``"key"`` get it stamped
    key: Callable[[Any], str] | None = None
    #: a unit's name in messages (default: its ``name`` attribute)
    unit_name: Callable[[Any], str] | None = None
    desc: str = "score"
    is_final: Callable[[Record], bool] | None = None
    whole_batches: bool = True
    live_progress: bool = False
    #: records of this stage go into the store's scores table
    stored: bool = True


@dataclass
class ScorePlan:
    """How a set of samples is scored: the scorer's full identity, stages, and what the summary needs."""

    fingerprint: dict[str, Any]
    label: str
    stages: list[Stage]
    #: benchmark fields written into the scoring manifest (read back by ``summarize``/``write_results``)
    context: dict[str, Any] = field(default_factory=dict)
    #: provenance of the scoring plugins (detector, judge, ...)
    provenance: dict[str, Any] = field(default_factory=dict)
    #: summary fields added at scoring time
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def scorer_hash(self) -> str:
        return content_hash(self.fingerprint, 12)


T = TypeVar("T")


def select_by_subset(items: Sequence[T], subset_of: Callable[[T], str], wanted: Sequence[str] | None,
                     limit: int | None, *, flag: str, subset_noun: str, known: Sequence[str] | None = None) -> list[T]:
    """The items of the ``wanted`` subsets (all if None), at most ``limit`` per subset, in their order.

    An unknown subset and a ``limit`` below 1 are one-line errors naming ``flag`` (``--tags``) and ``--limit``.
    """
    known = sorted({subset_of(x) for x in items}) if known is None else list(known)
    if wanted:
        unknown = [w for w in wanted if w not in known]
        if unknown:
            raise HarnessError(f"{flag}: unknown {subset_noun}(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if limit is not None and limit < 1:
        raise HarnessError(f"--limit {limit}: must be >= 1 (per {subset_noun}); leave it out for all")
    taken: dict[str, int] = {}
    chosen = []
    for item in items:
        subset = subset_of(item)
        if (wanted and subset not in wanted) or (limit is not None and taken.get(subset, 0) >= limit):
            continue
        taken[subset] = taken.get(subset, 0) + 1
        chosen.append(item)
    return chosen


@dataclass
class Generated:
    """One generated image (or the model's :class:`~harness.api.model.FailedImage`) and the benchmark's extra
    record fields for it."""

    image: Image.Image | FailedImage
    fields: dict[str, Any] = field(default_factory=dict)


class Benchmark(Reportable):
    """Base class of benchmarks. Subclasses set the class attributes and implement the abstract methods."""

    #: what a model must be able to do: "generate" (text-to-image) or "edit"
    capability: ClassVar[str] = "generate"
    #: the config dataclass; fields declared with :func:`harness.core.options.opt` (``stage="run"|"score"``)
    Config: ClassVar[type]
    #: progress-bar names of the generation stage
    generate_desc: ClassVar[str] = "generate"
    #: singular and plural noun of a scored sample, and what scoring one is called (messages)
    unit_nouns: ClassVar[tuple[str, str]] = ("image", "images")
    scored_verb: ClassVar[str] = "scored"

    def __init__(self, config: Any = None, **values: Any):
        if config is None or isinstance(config, Mapping):
            config = build_config(self.Config, {**dict(config or {}), **values}, owner=f"benchmark {self.name!r}")
        elif values:
            raise TypeError("pass either a config object or keyword values, not both")
        self.config = config

    # -- planning and generation -------------------------------------------------------------------------
    @abstractmethod
    def plan(self, model: ImageModel) -> Plan:
        """Items → work units and the run's identity. Validates the selection; loads the data it needs."""

    def prepare(self, out: Path, plan: Plan) -> None:
        """Write the benchmark's input files into the run folder (idempotent; e.g. per-prompt metadata)."""

    @abstractmethod
    def image_path(self, unit: WorkUnit) -> str:
        """Where a unit's image goes, relative to the run folder (``images/...``, the official layout)."""

    @abstractmethod
    def generate(self, model: ImageModel, units: list[WorkUnit], plan: Plan) -> list[Generated]:
        """One batch of units through the model, in unit order."""

    def run_extra(self, plan: Plan) -> dict[str, Any]:
        """Summary fields of a run (prompt set, model, expected counts)."""
        return {"model": plan.config.get("model")}

    @abstractmethod
    def plan_from_run(self, out: Path, manifest: dict[str, Any]) -> Plan:
        """The plan of an existing run folder, rebuilt from what ``prepare`` wrote (no download needed)."""

    # -- scoring -----------------------------------------------------------------------------------------
    @abstractmethod
    def build_scorer(self) -> Scorer:
        """The scorer of this config, not loaded yet (the engine resolves it before any work)."""

    def discover(self, images_dir: Path) -> Discovery:
        """A folder in the official layout made by anyone: its items and samples; skipped files listed."""
        raise HarnessError(f"{images_dir}: {self.name} scores only the images/ folder of a `harness run {self.name}` "
                           "run (it has no layout for folders made elsewhere)")

    def discover_extra(self, images_dir: Path) -> dict[str, Any]:
        """Summary fields about a run's own image folder when it is scored again (e.g. skipped files)."""
        return {}

    @abstractmethod
    def score_plan(self, scorer: Scorer, items: Sequence[Any], samples: list[Sample], images_dir: Path) -> ScorePlan:
        """The scoring stages over ``samples`` (the scorer is loaded)."""

    @abstractmethod
    def summarize(self, records: dict[str, list[Record]], manifest: dict[str, Any]) -> dict[str, Any]:
        """The summary from every stage's records (in manifest order) and the scoring manifest. Pure."""

    def write_results(self, records: dict[str, list[Record]], out: Path, images_dir: Path,
                      manifest: dict[str, Any]) -> None:
        """The benchmark's results files in its official format; by default ``results.jsonl``, one line per
        record of the first stage."""
        from harness.core.fsio import atomic_write_text
        from harness.core.jsonio import dumps

        rows = next(iter(records.values()), [])
        atomic_write_text(out / "results.jsonl", "".join(dumps(r, sort_keys=True) + "\n" for r in rows))

    def store_rows(self, records: Sequence[Record]) -> list[Record]:
        """Rows for the store's ``scores`` table (key, image, item_id, tag, correct, reason, details, metadata)."""
        return list(records)

    def metric_rows(self, summary: dict[str, Any]) -> list[Record]:
        """Rows for the store's ``metrics`` table (subset, metric, value, ci_lo, ci_hi, n)."""
        return [{"subset": "overall", "metric": self.name, "value": summary.get("overall"), "n": None}]

    def fresh_scoring(self, out: Path) -> dict[str, Any]:
        """Config values that make a re-scoring into ``out`` independent of earlier answers (judge drift
        control: e.g. a fresh judge cache); by default none."""
        return {}

    def format_summary(self, summary: dict[str, Any]) -> str:
        """The terminal table."""
        return f"{summary.get('label', self.name)}: overall {summary.get('overall')}"
