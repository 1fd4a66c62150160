"""The GEdit-Bench benchmark's own parts: rows → edits in the official layout → two VIEScore questions per case →
strict and parity SC / PQ / O per task group (docs/gedit.md).

Everything else (run folder, resume, ranks and shards, scoring manifests, store) is the engine's. A run writes
``images/fullset/<task_type>/<language>/<key>.png`` and the source beside it as ``<key>_SRCIMG.png``, so the
official ``test_gedit_score.py`` (``--save_path RUN --model_name images``) re-scores the folder unmodified. The
judge stage retries, on the next run, a case whose SC or PQ request brought no answer (``judge_failed``); every
case ends ``scored``, ``parse_failed`` or ``judge_failed``.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.api.benchmark import Benchmark, Discovery, Generated, Plan, Sample, ScorePlan, Stage, WorkUnit
from harness.api.model import FailedImage
from harness.benchmarks.gedit import aggregate, report, results
from harness.benchmarks.gedit.data import (
    GROUPS,
    REVISION,
    Case,
    CaseSet,
    load_case_set,
    ordered_groups,
    read_cases_json,
)
from harness.benchmarks.gedit.judge import DEFAULT_MODEL, PROFILES, CaseImages, cache_fields, requests
from harness.benchmarks.gedit.prompts import PQ_SHA256, SC_SHA256
from harness.benchmarks.gedit.protocol import KINDS, Reply, needs_another, official_outcome, strict_outcome
from harness.core.errors import HarnessError
from harness.core.fsio import atomic_write_bytes, atomic_write_text, listing
from harness.core.hashing import content_hash, sha256_file
from harness.core.jsonio import dumps
from harness.core.options import (
    INTEGER,
    POSITIVE_INT,
    Check,
    one_of,
    opt,
    optional,
    split_list,
)
from harness.core.paths import inside, safe_name
from harness.scorers.openai_judge import JudgeConfig, build_judge, parse_price
from harness.scorers.openai_judge import JudgedEdit as ScoreUnit

#: threads encoding judge images ahead of the requests (PIL releases the GIL while it codes)
ENCODERS = max(1, min(4, os.cpu_count() or 1))
REVISION_TEXT = Check("a dataset revision (commit hash, branch or tag)",
                      lambda v: isinstance(v, str) and re.fullmatch(r"[\w.\-/]{1,100}", v) is not None)


@dataclass
class GEditConfig(JudgeConfig):
    """``harness run gedit`` / ``harness score gedit`` settings."""

    cases: str = opt("official", check=one_of("official", "demo"), stage="score",
                     help="'official' (stepfun-ai/GEdit-Bench from the Hugging Face hub at --revision, or "
                          "--data-dir) or 'demo' (44 built-in rows with drawn images)")
    data_dir: str | None = opt(None, stage="score",
                               help="offline copy of the dataset: a snapshot (parquet/arrow files) or an exported "
                                    "folder (metadata.jsonl + images)")
    revision: str = opt(REVISION, check=REVISION_TEXT, stage="score",
                        help=f"dataset revision to download (default {REVISION[:12]}...; recorded with the resolved "
                             "commit)")
    language: str = opt("en", check=one_of("en", "cn", "both"), stage="score",
                        help="instruction language: en (GEdit-EN, what papers report), cn, or both (each scored "
                             "and reported on its own)")
    types: str | None = opt(None, stage="score", help="comma-separated task types (default: all 11)")
    limit: int | None = opt(None, check=POSITIVE_INT, stage="score",
                            help="at most N rows per task type and language")
    seed: int = opt(42, check=INTEGER, help="seed of every edit")
    batch_size: int = opt(1, check=POSITIVE_INT, help="edits per model call; part of the run's identity")
    judge_profile: str = opt("gpt", check=one_of(*PROFILES), stage="score",
                             help="official backend to reproduce: gpt (text first, JPEG, 1400 tokens) or qwen "
                                  "(images first, PNG, 512 tokens; e.g. Qwen2.5-VL-72B behind vLLM)")
    judge_model: str = opt(DEFAULT_MODEL, stage="score",
                           help=f"model name sent to the endpoint (default {DEFAULT_MODEL}, as the official "
                                "scorer; the dated model the endpoint returns is recorded)")
    judge_attempts: int = opt(3, check=POSITIVE_INT, stage="score",
                              help="times both questions are asked at most while an answer does not parse (the "
                                   "official loop has no cap)")
    judge_max_tokens: int | None = opt(None, check=optional(POSITIVE_INT), stage="score",
                                       help="max_tokens (default: the profile's, 1400 for gpt and 512 for qwen)")
    judge_cache: str | None = opt(None, stage="score",
                                  help="SQLite judge cache (default $HARNESS_CACHE/imgedit/judge-cache.sqlite, shared)")
    parity: bool = opt(False, stage="score",
                       help="headline numbers from the official parser and statistics (the cases it would guess "
                            "are counted with the interval they allow); both are always computed and stored")
    missing: str = opt("error", check=one_of("error", "count"), stage="score",
                       help="rows without an edited or source image: error (default) or count them (judge_failed; "
                            "skipped by the parity numbers, as the official scorer does)")


class GEdit(Benchmark):
    """GEdit-Bench (docs/gedit.md): 606 edits x (en, cn), 11 task groups, VIEScore SC/PQ 0-10, O = sqrt(SC*PQ)."""

    name: ClassVar[str] = "gedit"
    capability: ClassVar[str] = "edit"
    Config: ClassVar[type] = GEditConfig
    generate_desc: ClassVar[str] = "edit"
    unit_nouns: ClassVar[tuple[str, str]] = ("case", "cases")
    scored_verb: ClassVar[str] = "judged"
    threshold: ClassVar[float] = 0.1
    comparison: ClassVar[str] = "stratified"
    alpha: ClassVar[float] = 0.01

    def __init__(self, config: Any = None, **values: Any):
        super().__init__(config, **values)
        self._judge: Any = None
        self._case_set: CaseSet | None = None
        self.build_scorer()  # checks the judge's name and options before any work

    # -- data ------------------------------------------------------------------------------------------
    def _types(self) -> list[str] | None:
        return split_list(self.config.types)

    def _languages(self) -> tuple[str, ...]:
        return ("en", "cn") if self.config.language == "both" else (self.config.language,)

    def case_set(self) -> CaseSet:
        c = self.config
        if self._case_set is None:
            self._case_set = load_case_set(c.cases, data_dir=c.data_dir, revision=c.revision)
        return self._case_set

    def _select(self, case_set: CaseSet) -> list[Case]:
        cases = case_set.select(self._languages(), self._types(), self.config.limit)
        if not cases:
            raise HarnessError(f"--language {self.config.language}: the {case_set.label} rows hold no instruction in "
                               "that language; pick another --language")
        return cases

    def _label(self, case_set: CaseSet) -> str:
        return f"{case_set.label}-{'EN+CN' if self.config.language == 'both' else self.config.language.upper()}"

    # -- planning and generation -------------------------------------------------------------------------
    def plan(self, model: Any) -> Plan:
        c = self.config
        case_set = self.case_set()
        cases = self._select(case_set)
        config = {
            "benchmark": self.name, "label": self._label(case_set),
            "cases": {"name": case_set.name, "label": case_set.label, "sha256": case_set.sha256,
                      "language": c.language, "ids": [x.id for x in cases]},
            "seed": c.seed, "batch_size": c.batch_size, "model": model.fingerprint(), "model_hash": model.model_hash(),
        }
        return self._plan(case_set, cases, config)

    def _plan(self, case_set: CaseSet, cases: list[Case], config: dict[str, Any]) -> Plan:
        units = []
        for x in cases:
            path = case_set.source_path(x)
            if not path.is_file():
                raise HarnessError(f"{path}: the source image of {x.id} is missing; restore it (or rerun "
                                   "`harness run gedit`, which writes it)")
            units.append(WorkUnit(self.name, x.id, content_hash([x.record(), sha256_file(path)]), 0, config["seed"],
                                  config["model_hash"]))
        prov = {"data": dict(case_set.provenance)}
        return Plan(config, cases, units, config["batch_size"], provenance=prov, context=case_set)

    def prepare(self, out: Path, plan: Plan) -> None:
        """``cases.json`` (the selected rows in the dataset's fields) and every source as ``<key>_SRCIMG.png``."""
        if not (out / "cases.json").is_file():
            atomic_write_text(out / "cases.json", dumps([x.record() for x in plan.items], indent=1,
                                                        ensure_ascii=False) + "\n")
        for x in plan.items:
            target = inside(out / "images", x.source_rel, what="source image")
            if not target.is_file():
                atomic_write_bytes(target, plan.context.source_path(x).read_bytes(), fsync=False)

    def plan_from_run(self, out: Path, manifest: dict[str, Any]) -> Plan:
        """The run's rows from its ``cases.json`` and its sources from ``images/`` (``--types``/``--limit``/
        ``--language`` select among them)."""
        config = manifest["config"]
        cases = read_cases_json(out / "cases.json")
        case_set = CaseSet(config["cases"]["name"], config["cases"]["label"], cases, out / "images",
                           (manifest.get("provenance") or {}).get("data") or {})
        case_set.provenance.setdefault("sha256", config["cases"].get("sha256"))
        self._case_set = case_set
        return self._plan(case_set, case_set.select(self._languages(), self._types(), self.config.limit), config)

    def image_path(self, unit: WorkUnit) -> str:
        task, language, key = unit.item_id.split("/")
        for value, what in ((task, "task_type"), (language, "language"), (key, "key")):
            safe_name(value, what=what, where="cases.json")
        return f"images/fullset/{task}/{language}/{key}.png"

    def generate(self, model: Any, units: list[WorkUnit], plan: Plan) -> list[Generated]:
        from harness.core.images import open_rgb

        cases = {x.id: x for x in plan.items}
        sources = [open_rgb(plan.context.source_path(cases[u.item_id]), "source image") for u in units]
        images = model.edit(sources, [cases[u.item_id].instruction for u in units], [u.seed for u in units])
        return [Generated(image, {"source_size": list(source.size)} if isinstance(image, FailedImage)
                          else {"model_size": list(image.size), "source_size": list(source.size)})
                for source, image in zip(sources, images, strict=False)]

    def run_extra(self, plan: Plan) -> dict[str, Any]:
        c = plan.config
        return {"model": c["model"], "seed": c["seed"]}

    # -- scoring -----------------------------------------------------------------------------------------
    @property
    def profile(self) -> Any:
        return PROFILES[self.config.judge_profile]

    def build_scorer(self) -> Any:
        c = self.config
        if self._judge is None:
            max_tokens = c.judge_max_tokens if c.judge_max_tokens is not None else self.profile.max_tokens
            self._judge = build_judge(c, self.profile.protocol, max_tokens=max_tokens)
        return self._judge

    def discover(self, images_dir: Path) -> Discovery:
        """A folder in the official layout (``<save_path>/<method>``, holding ``fullset/``): the selected rows whose
        edited image and source are both there."""
        from harness.core.images import check_pixels

        if not (images_dir / "fullset").is_dir():
            raise HarnessError(f"--images {images_dir}: no fullset/ folder; pass the method folder of the official "
                               "layout (<save_path>/<method>, holding fullset/<task_type>/<language>/<key>.png)")
        case_set = self.case_set()
        cases = self._select(case_set)
        samples = []
        for x in cases:
            edited = inside(images_dir, x.edited_rel, what="edited image")
            if edited.is_file() and inside(images_dir, x.source_rel, what="source image").is_file():
                check_pixels(edited, "edited image")
                samples.append(Sample(edited, x.edited_rel, x.id, sha256_file(edited)))
        return Discovery(cases, samples, _inventory(images_dir, case_set, cases),
                         {"data": dict(case_set.provenance)})

    def score_plan(self, scorer: Any, items: Sequence[Any], samples: list[Sample], images_dir: Path) -> ScorePlan:
        from harness.registry import provenance_of

        c, cases = self.config, list(items)
        case_set = self._case_set
        assert case_set is not None
        fingerprint = {**scorer.fingerprint(), "profile": c.judge_profile, "attempts": c.judge_attempts,
                       "prompts": {"SC_sha256": SC_SHA256, "PQ_sha256": PQ_SHA256}}
        scorer_hash = content_hash(fingerprint, 12)
        units = _score_units(cases, {s.item_id: s for s in samples}, images_dir, scorer_hash=scorer_hash,
                             missing=c.missing)
        stages = [Stage(f"score-{scorer_hash}", units, _judge_batch(scorer, self.profile, c.judge_attempts),
                        c.judge_batch_size, desc="judge", is_final=lambda r: r["status"] != "judge_failed",
                        whole_batches=False, live_progress=True)]
        context = {"mode": "parity" if c.parity else "strict", "language": c.language, "profile": c.judge_profile,
                   "backbone": self.profile.backbone, "price": parse_price(c.judge_price),
                   "groups": ordered_groups({x.task_type for x in cases} | set(GROUPS)),
                   "prompts": {"SC_sha256": SC_SHA256, "PQ_sha256": PQ_SHA256},
                   "prompt_set": {"name": case_set.name, "sha256": content_hash([x.record() for x in cases], 64),
                                  "data_sha256": case_set.sha256, "cases": len(cases),
                                  "data": {k: v for k, v in case_set.provenance.items() if k != "cache"}}}
        return ScorePlan(fingerprint, self._label(case_set), stages, context,
                         provenance={"judge": provenance_of("judges", scorer)})

    def summarize(self, records: dict[str, list[dict[str, Any]]], manifest: dict[str, Any]) -> dict[str, Any]:
        return results.summarize(next(iter(records.values())), manifest["context"], manifest["scorer"])

    def write_results(self, records: dict[str, list[dict[str, Any]]], out: Path, images_dir: Path,
                      manifest: dict[str, Any]) -> None:
        results.write_results(next(iter(records.values())), out, images_dir, manifest["context"])

    store_rows = staticmethod(results.store_rows)
    metric_rows = staticmethod(aggregate.metric_rows)
    format_summary = staticmethod(aggregate.format_table)

    def fresh_scoring(self, out: Path) -> dict[str, Any]:
        return {"judge_cache": str(out / "fresh-judge-cache.db")}

    # -- comparison and reports --------------------------------------------------------------------------
    paired_scores = staticmethod(report.paired_scores)
    summary_rows = staticmethod(report.summary_rows)
    report_section = staticmethod(report.section)
    published = staticmethod(report.published)


# -- scoring units and the judge stage ------------------------------------------------------------------------
def _score_units(cases: list[Case], found: dict[str, Sample], images_dir: Path, *, scorer_hash: str,
                 missing: str) -> list[ScoreUnit]:
    """One unit per row, in row order; a row without its images is a unit the judge never sees."""
    from harness.core.images import check_pixels

    units, absent = [], []
    for case in cases:
        name, sample = case.edited_rel, found.get(case.id)
        source = inside(images_dir, case.source_rel, what="source image")
        if sample is None or not source.is_file():
            absent.append(case.edited_rel if sample is None else case.source_rel)
            units.append(ScoreUnit(case, name, None, None, "", "", content_hash(["missing", case.id, scorer_hash], 32)))
            continue
        if sample.failure is not None:  # the model made no image: judge_failed, never sent to the judge
            units.append(ScoreUnit(case, name, None, None, sample.sha256, "",
                                   content_hash(["failed", case.id, scorer_hash, sample.sha256], 32),
                                   f"generation failed: {sample.failure}"))
            continue
        check_pixels(source, "source image")
        source_sha = sha256_file(source)
        key = content_hash([scorer_hash, case.record(), source_sha, sample.sha256], 32)
        units.append(ScoreUnit(case, name, sample.path, source, sample.sha256, source_sha, key))
    if absent and missing == "error":
        raise HarnessError(f"{images_dir}: {len(absent)} of {len(cases)} row image(s) missing ({listing(absent)}); "
                           "generate them, or pass --missing count to count them as judge_failed (the official "
                           "scorer skips them)")
    return units


@dataclass
class _Case:
    """A case being judged: its unit, prepared images, the replies of each attempt and the request results."""

    unit: ScoreUnit
    images: CaseImages
    attempts: list[dict[str, Reply]]
    results: list[Any]
    pending: int = 0


def _judge_batch(judge: Any, profile: Any, max_attempts: int) -> Callable[..., list[dict[str, Any]]]:
    """The judge stage's batch function: attempts of both questions for the units with images, records for all."""
    def process(batch: list[ScoreUnit], tick: Callable[[int], None]) -> list[dict[str, Any]]:
        pool = ThreadPoolExecutor(max_workers=ENCODERS)
        try:
            return judge_cases(batch, tick, pool)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def judge_cases(batch: list[ScoreUnit], tick: Callable[[int], None], pool: ThreadPoolExecutor) -> list[
            dict[str, Any]]:
        start = time.perf_counter()
        live = {u.key: _Case(u, CaseImages(u.source, u.image, profile.media_type), [], [])
                for u in batch if u.image is not None}
        tick(len(batch) - len(live))
        active = list(live.values())
        owner: dict[str, tuple[_Case, str]] = {}

        def arrived(result: Any) -> None:
            case, kind = owner[result.key]
            case.attempts[-1][kind] = _reply(result)
            case.results.append(result)
            case.pending -= 1
            if case.pending == 0 and not needs_another(case.attempts, max_attempts):
                tick(1)

        while active:
            number = len(active[0].attempts) + 1
            reqs = []
            owner.clear()
            for case in active:
                keys = tuple(judge.cache_key(cache_fields(kind, case=case.unit.case.id,
                                                          instruction=case.unit.case.instruction,
                                                          source_sha=case.unit.source_sha,
                                                          edited_sha=case.unit.image_sha, attempt=number))
                             for kind in KINDS)
                case.attempts.append({})
                case.pending = len(KINDS)
                for kind, req in zip(KINDS, requests(keys, case.unit.case.instruction, case.images, profile),
                                     strict=True):
                    reqs.append(req)
                    owner[req.key] = (case, kind)
            for case in _uncached(judge, active, reqs):  # images encoded in workers while the requests run
                pool.submit(case.images.prepare)
            judge.judge_many(reqs, on_result=arrived)
            active = [case for case in active if needs_another(case.attempts, max_attempts)]
        seconds = time.perf_counter() - start
        return [_record(live[u.key], seconds / max(len(live), 1)) if u.key in live else _missing_record(u)
                for u in batch]

    return process


def _uncached(judge: Any, cases: list[_Case], reqs: list[Any]) -> list[_Case]:
    """The cases with a request the judge's answer cache cannot answer (all, for a judge without that cache)."""
    path = getattr(judge, "cache_path", None)
    if path is None or not Path(path).is_file():
        return cases
    from harness.scorers.openai_judge import JudgeCache

    cache = JudgeCache(path)
    try:
        missing = {r.key for r in reqs if cache.get(r.key) is None}
    finally:
        cache.close()
    per_case = len(reqs) // max(len(cases), 1)
    return [c for i, c in enumerate(cases) if any(r.key in missing for r in reqs[i * per_case:(i + 1) * per_case])]


def _reply(result: Any) -> Reply:
    if result.ok:
        return Reply(result.answer)
    return Reply(None, result.reason, refused=result.reason.startswith("content_filter"))


def _base(unit: ScoreUnit) -> dict[str, Any]:
    c = unit.case
    return {"key": unit.key, "case": c.id, "task_type": c.task_type, "language": c.language, "row_key": c.key,
            "intersection": c.intersection, "instruction": c.instruction, "image": c.edited_rel,
            "source": c.source_rel}


def _record(case: _Case, seconds: float) -> dict[str, Any]:
    from PIL import Image

    unit = case.unit
    strict = strict_outcome(case.attempts)
    fresh = [r for r in case.results if not r.cached]
    causes: Counter = Counter()
    for r in fresh:
        causes.update(r.causes or {})
    with Image.open(unit.image) as im, Image.open(unit.source) as src:
        sizes = {"edited_size": list(im.size), "source_size": list(src.size)}
    return _base(unit) | sizes | {
        "image_sha256": unit.image_sha, "source_sha256": unit.source_sha,
        "status": strict.status, "reason": strict.reason, "SC": strict.sc, "PQ": strict.pq, "O": strict.o,
        "parity": official_outcome(case.attempts).record(),
        "answers": [{k: a[k].record() for k in KINDS} for a in case.attempts],
        "cached_answers": len(case.results) - len(fresh), "requests": sum(r.attempts for r in fresh),
        "retries": sum(max(r.attempts - 1, 0) for r in fresh), "attempt_causes": dict(causes),
        "prompt_tokens": sum(r.prompt_tokens for r in fresh),
        "completion_tokens": sum(r.completion_tokens for r in fresh),
        "judge_model": next((r.model for r in case.results if r.model), None),
        "endpoint": next((r.endpoint for r in case.results if r.endpoint), None), "seconds": round(seconds, 3)}


def _missing_record(unit: ScoreUnit) -> dict[str, Any]:
    return _base(unit) | {"status": "judge_failed", "reason": unit.failure or "missing image", "SC": None,
                          "PQ": None, "O": None, "parity": {"decided": False, "missing": True}, "answers": [],
                          "cached_answers": 0, "requests": 0}


def _inventory(images_dir: Path, case_set: CaseSet, cases: list[Case]) -> dict[str, Any]:
    """Other PNGs under ``fullset/``: of rows not selected (counted), or of no row at all (an error)."""
    known = {x.edited_rel for x in case_set.cases} | {x.source_rel for x in case_set.cases}
    selected = {x.edited_rel for x in cases} | {x.source_rel for x in cases}
    unknown, others, skipped = [], 0, []
    for p in sorted((images_dir / "fullset").rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(images_dir).as_posix()
        if p.suffix.lower() != ".png":
            skipped.append(rel)
        elif rel not in known:
            unknown.append(rel)
        elif rel not in selected:
            others += 1
    if unknown:
        raise HarnessError(f"{images_dir}: {len(unknown)} image(s) match no row of {case_set.label} "
                           f"({listing(unknown)}); wrong --cases/--data-dir, or remove them")
    return {"skipped_files": skipped, "not_selected_images": others}
