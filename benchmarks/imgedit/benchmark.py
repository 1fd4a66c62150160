"""The ImgEdit benchmark's own parts: cases → edit units → ``images/<key>.png`` → judge → strict and parity scores.

Everything else (run folder, resume, ranks and shards, scoring manifests, store) is the engine's. The
judge stage retries a case the judge could not answer (``judge_failed``) on the next run; every case ends
``scored``, ``parse_failed`` or ``judge_failed`` and the summary counts each (docs/imgedit.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.api.benchmark import Benchmark, Discovery, Generated, Plan, Sample, ScorePlan, Stage, WorkUnit
from harness.api.model import FailedImage
from harness.benchmarks.imgedit import aggregate, report, results
from harness.benchmarks.imgedit.data import Case, CaseSet, check_sources, load_case_set, parse_cases, rubric_sha
from harness.benchmarks.imgedit.judge import DEFAULT_MODEL, PROTOCOL, cache_fields, judge_request
from harness.core.errors import HarnessError
from harness.core.fsio import atomic_write_text, is_lock_file, listing
from harness.core.hashing import content_hash, sha256_file
from harness.core.jsonio import dumps
from harness.core.options import (
    INTEGER,
    POSITIVE_INT,
    one_of,
    opt,
    split_list,
)
from harness.core.paths import inside, safe_name
from harness.scorers.openai_judge import JudgeConfig, build_judge, parse_price
from harness.scorers.openai_judge import JudgedEdit as ScoreUnit


@dataclass
class ImgEditConfig(JudgeConfig):
    """``harness run imgedit`` / ``harness score imgedit`` settings."""

    cases: str = opt("official", stage="score",
                     help="'official' (Basic suite, 737 cases, downloaded and sha256-checked), 'demo' (18 built-in "
                          "cases with drawn images), or a case JSON in the basic_edit.json schema")
    case_version: str = opt("2025-06-16", check=one_of("2025-06-16", "pre-2025-06-16"), stage="score",
                            help="which basic_edit.json: current, or the one before the alter->adjust rename")
    data_dir: str | None = opt(None, stage="score",
                               help="offline folder with basic_edit.json / prompts.json (sha256-checked) and the "
                                    "images (Benchmark/singleturn or singleturn, or Benchmark.tar)")
    source_root: str | None = opt(None, stage="score", help="folder of the source images (Benchmark/singleturn)")
    rubrics: str | None = opt(None, stage="score", help="custom rubric JSON (default: the official prompts.json)")
    types: str | None = opt(None, stage="score", help="comma-separated edit types (default: all)")
    limit: int | None = opt(None, check=POSITIVE_INT, stage="score", help="at most N cases per edit type")
    seed: int = opt(42, check=INTEGER, help="seed of every edit (UniWorld's imgedit.yaml: 42)")
    batch_size: int = opt(1, check=POSITIVE_INT, help="edits per model call; part of the run's identity")
    keep_model_size: bool = opt(False, help="save edits at the model's output size (default: resized to the "
                                            "source image's size)")
    judge_model: str = opt(DEFAULT_MODEL, stage="score",
                           help=f"model name sent to the endpoint (default {DEFAULT_MODEL}; the official script "
                                "says gpt-4o, the leaderboard GPT-4.1)")
    parity: bool = opt(False, stage="score",
                       help="headline numbers from the official parser and aggregation (dropping + 2-decimal "
                            "rounding); both are always computed and stored")
    size_check: str = opt("error", check=one_of("error", "allow"), stage="score",
                          help="an edited image whose size differs from its source: error (default) or judge anyway")
    missing: str = opt("error", check=one_of("error", "count"), stage="score",
                       help="cases without an edited image: error (default) or count them as judge_failed")
    clip_metrics: str | None = opt(None, stage="score",
                                   help="also compute offline CLIP metrics (source/edit similarity, instruction "
                                        "alignment, edit direction) with open_clip ARCH:PRETRAINED, e.g. "
                                        "ViT-L-14:openai ('tiny' = random)")
    device: str = opt("auto", stage="score", help="device for the CLIP metrics")


class ImgEdit(Benchmark):
    """ImgEdit Basic (docs/imgedit.md): 737 cases, 9 edit types, judge sub-scores 1-5, overall = mean of types."""

    name: ClassVar[str] = "imgedit"
    capability: ClassVar[str] = "edit"
    Config: ClassVar[type] = ImgEditConfig
    generate_desc: ClassVar[str] = "edit"
    unit_nouns: ClassVar[tuple[str, str]] = ("case", "cases")
    scored_verb: ClassVar[str] = "judged"
    threshold: ClassVar[float] = 0.1
    comparison: ClassVar[str] = "paired-mean"
    alpha: ClassVar[float] = 0.01

    def __init__(self, config: Any = None, **values: Any):
        super().__init__(config, **values)
        self._judge: Any = None
        self._case_set: CaseSet | None = None
        if self.config.clip_metrics:
            from harness.scorers.clip import check_clip_spec

            check_clip_spec(self.config.clip_metrics, flag="--clip-metrics")
        self.build_scorer()  # checks the judge's name and options before any work

    # -- data ------------------------------------------------------------------------------------------
    def _types(self) -> list[str] | None:
        return split_list(self.config.types)

    def case_set(self) -> CaseSet:
        c = self.config
        if self._case_set is None:
            self._case_set = load_case_set(c.cases, version=c.case_version, data_dir=c.data_dir,
                                           source_root=c.source_root, rubrics=c.rubrics)
        return self._case_set

    # -- planning and generation -------------------------------------------------------------------------
    def plan(self, model: Any) -> Plan:
        c = self.config
        case_set = self.case_set()
        cases = case_set.select(self._types(), c.limit)
        config = {
            "benchmark": self.name, "cases": case_set.provenance["cases"] | {"keys": [x.key for x in cases]},
            "rubrics": case_set.provenance["rubrics"], "label": case_set.label,
            "seed": c.seed, "batch_size": c.batch_size, "resize_to_source": not c.keep_model_size,
            "model": model.fingerprint(), "model_hash": model.model_hash(),
        }
        return self._plan(case_set, cases, config)

    def _plan(self, case_set: CaseSet, cases: list[Case], config: dict[str, Any]) -> Plan:
        shas = check_sources(case_set, cases)
        units = [WorkUnit(self.name, x.key, content_hash([x.record(), shas[x.source]]), 0, config["seed"],
                          config["model_hash"]) for x in cases]
        return Plan(config, cases, units, config["batch_size"], provenance={"sources": case_set.provenance["sources"]},
                    context=case_set)

    def prepare(self, out: Path, plan: Plan) -> None:
        if not (out / "cases.json").is_file():  # the selected cases in the official schema, and the rubrics
            atomic_write_text(out / "cases.json", dumps({x.key: x.record() for x in plan.items}, indent=1) + "\n")
            atomic_write_text(out / "rubrics.json",
                              dumps(plan.context.rubrics, indent=1, ensure_ascii=False) + "\n")

    def plan_from_run(self, out: Path, manifest: dict[str, Any]) -> Plan:
        """The run's cases from its ``cases.json``/``rubrics.json`` and recorded source root (``--types``/
        ``--limit`` select among them)."""
        from harness.benchmarks.imgedit.data import load_json, parse_rubrics

        config = manifest["config"]
        rubrics = parse_rubrics(load_json(out / "rubrics.json", "rubrics.json"), out / "rubrics.json")
        renamed = {"alter": "adjust"} if config["cases"].get("version") == "pre-2025-06-16" else {}
        cases = parse_cases(load_json(out / "cases.json", "cases.json"), out / "cases.json", rubrics, renamed)
        sources = manifest.get("provenance", {}).get("sources", {})
        root = Path(sources.get("root", ""))
        if not root.is_dir():
            raise HarnessError(f"{out}/run.json: source image folder {root} is gone; restore it (or rerun "
                               "`harness run`)")
        self._case_set = CaseSet(config["cases"]["name"], config["label"], cases, rubrics, root,
                                 {"cases": config["cases"], "rubrics": config["rubrics"], "sources": sources})
        return self._plan(self._case_set, self._case_set.select(self._types(), self.config.limit), config)

    def image_path(self, unit: WorkUnit) -> str:
        return f"images/{safe_name(unit.item_id, what='case key', where='cases.json')}.png"

    def generate(self, model: Any, units: list[WorkUnit], plan: Plan) -> list[Generated]:
        from PIL import Image

        from harness.core.images import open_rgb

        cases = {x.key: x for x in plan.items}
        sources = [open_rgb(plan.context.source_path(cases[u.item_id]), "source image") for u in units]
        images = model.edit(sources, [cases[u.item_id].prompt for u in units], [u.seed for u in units])
        out = []
        for source, image in zip(sources, images, strict=False):
            if isinstance(image, FailedImage):  # recorded failed by the engine; judged as a failure
                out.append(Generated(image, {"source_size": list(source.size)}))
                continue
            model_size = list(image.size)
            if plan.config["resize_to_source"] and image.size != source.size:
                image = image.convert("RGB").resize(source.size, Image.Resampling.LANCZOS)
            out.append(Generated(image, {"model_size": model_size, "source_size": list(source.size)}))
        return out

    def run_extra(self, plan: Plan) -> dict[str, Any]:
        c = plan.config
        return {"model": c["model"], "seed": c["seed"], "resize_to_source": c["resize_to_source"]}

    # -- scoring -----------------------------------------------------------------------------------------
    def build_scorer(self) -> Any:
        if self._judge is None:
            self._judge = build_judge(self.config, PROTOCOL)
        return self._judge

    def discover(self, images_dir: Path) -> Discovery:
        from harness.core.images import check_pixels

        case_set = self.case_set()
        cases = case_set.select(self._types(), self.config.limit)
        samples = []
        for x in cases:
            path = inside(images_dir, f"{x.key}.png", what="edited image")
            if path.is_file():
                check_pixels(path, "edited image")
                samples.append(Sample(path, path.name, x.key, sha256_file(path)))
        return Discovery(cases, samples, _inventory(images_dir, case_set, cases),
                         {"sources": case_set.provenance["sources"]})

    def score_plan(self, scorer: Any, items: Sequence[Any], samples: list[Sample], images_dir: Path) -> ScorePlan:
        from harness.benchmarks.imgedit.parse import rubric_labels
        from harness.registry import provenance_of

        case_set, cases, c = self._case_set, list(items), self.config
        assert case_set is not None
        labels = {t: list(rubric_labels(text)) for t, text in case_set.rubrics.items()}
        bad = sorted(t for t in {x.edit_type for x in cases} if len(labels[t]) != 3)
        if bad:
            raise HarnessError(f"rubric(s) {', '.join(bad)}: need exactly three 'Label: A number from 1 to 5.' lines "
                               "in the response format; fix the rubric file")
        rubric_shas = {t: rubric_sha(case_set.rubrics[t]) for t in sorted({x.edit_type for x in cases})}
        fingerprint = {**scorer.fingerprint(), "rubric_sha256": rubric_shas}
        scorer_hash = content_hash(fingerprint, 12)
        units = _score_units(scorer, case_set, cases, {s.item_id: s for s in samples}, images_dir,
                             scorer_hash=scorer_hash, size_check=c.size_check, missing=c.missing)
        stages = [Stage(f"score-{scorer_hash}", units, _judge_batch(scorer, case_set, labels), c.judge_batch_size,
                        desc="judge", is_final=lambda r: r["status"] != "judge_failed", whole_batches=False,
                        live_progress=True)]
        context: dict[str, Any] = {"labels": labels, "mode": "parity" if c.parity else "strict",
                                   "price": parse_price(c.judge_price), "clip": None}
        if c.clip_metrics:
            from harness.benchmarks.imgedit.clip_metrics import ClipMetrics, clip_process

            clip = ClipMetrics(c.clip_metrics, device=c.device)
            context["clip"] = {"spec": c.clip_metrics, "hash": clip.scorer_hash()}
            stages.append(Stage(f"clip-{clip.scorer_hash()}", [u for u in units if u.image is not None],
                                clip_process(clip), 16, desc="clip", stored=False))
        return ScorePlan(fingerprint, case_set.label, stages, context,
                         provenance={"judge": provenance_of("judges", scorer)})

    def summarize(self, records: dict[str, list[dict[str, Any]]], manifest: dict[str, Any]) -> dict[str, Any]:
        stages = list(records.values())
        return results.summarize(stages[0], manifest["context"], manifest["scorer"],
                                 stages[1] if len(stages) > 1 else None)

    def write_results(self, records: dict[str, list[dict[str, Any]]], out: Path, images_dir: Path,
                      manifest: dict[str, Any]) -> None:
        results.write_results(next(iter(records.values())), out)

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
def _score_units(judge: Any, case_set: CaseSet, cases: list[Case], found: dict[str, Sample], images_dir: Path, *,
                 scorer_hash: str, size_check: str, missing: str) -> list[ScoreUnit]:
    """One unit per case, in case order; a case without an image (missing, or one the model could not make) is a
    unit the judge never sees."""
    from PIL import Image

    from harness.core.images import check_pixels

    shas = check_sources(case_set, cases)
    units, absent, wrong = [], [], []
    for case in cases:
        name, sample = f"{case.key}.png", found.get(case.key)
        if sample is None:
            absent.append(case.key)
            missing_key = content_hash(["missing", case.key, scorer_hash], 32)
            units.append(ScoreUnit(case, name, None, None, "", "", missing_key))
            continue
        if sample.failure is not None:
            units.append(ScoreUnit(case, name, None, None, sample.sha256, "",
                                   content_hash(["failed", case.key, scorer_hash, sample.sha256], 32),
                                   f"generation failed: {sample.failure}"))
            continue
        image = inside(images_dir, f"{case.key}.png", what="edited image")
        source = case_set.source_path(case)
        check_pixels(image, "edited image")
        check_pixels(source, "source image")
        try:
            with Image.open(image) as im, Image.open(source) as src:
                if im.size != src.size:
                    wrong.append(f"{image.name} {im.size[0]}x{im.size[1]} vs source {src.size[0]}x{src.size[1]}")
        except OSError as exc:
            raise HarnessError(f"{image}: not a readable image ({exc}); regenerate it") from exc
        key = judge.cache_key(cache_fields(rubric_sha=rubric_sha(case_set.rubrics[case.edit_type]), case=case.key,
                                           instruction=case.prompt, source_sha=shas[case.source],
                                           edited_sha=sample.sha256))
        units.append(ScoreUnit(case, name, image, source, sample.sha256, shas[case.source], key))
    if absent and missing == "error":
        raise HarnessError(f"{images_dir}: {len(absent)} of {len(cases)} case image(s) missing "
                           f"({listing([f'{k}.png' for k in absent])}); generate them, or pass --missing count "
                           "to count them as judge_failed")
    if wrong and size_check == "error":
        raise HarnessError(f"{images_dir}: {len(wrong)} edited image(s) differ in size from their source "
                           f"({listing(wrong, 3)}); resize them to the source size, or pass --size-check allow to "
                           "judge them as they are (the official script does)")
    return units


def _judge_batch(judge: Any, case_set: CaseSet, labels: dict[str, list[str]]) -> Callable[..., list[dict[str, Any]]]:
    """The judge stage's batch function: requests for the units with an image, records for all."""
    def process(batch: list[ScoreUnit], tick: Callable[[int], None]) -> list[dict[str, Any]]:
        present = [u for u in batch if u.image is not None]
        requests = [judge_request(u.key, case_set.rubrics[u.case.edit_type], u.case.prompt, u.source, u.image)
                    for u in present]
        results = dict(zip([u.key for u in present], judge.judge_many(requests, on_result=lambda r: tick(1)),
                           strict=True))
        tick(len(batch) - len(present))
        return [_record(u, results[u.key], labels[u.case.edit_type]) if u.image is not None else _missing_record(u)
                for u in batch]

    return process


def _record(unit: ScoreUnit, result: Any, labels: list[str]) -> dict[str, Any]:
    from harness.benchmarks.imgedit.parse import parse_strict

    base = {"key": unit.key, "case": unit.case.key, "edit_type": unit.case.edit_type, "image": unit.name,
            "image_sha256": unit.image_sha, "source_sha256": unit.source_sha, "cached": result.cached,
            "attempts": result.attempts, "attempt_causes": getattr(result, "causes", {}),
            "endpoint": getattr(result, "endpoint", None), "seconds": round(result.seconds, 3),
            "judge_model": result.model, "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens}
    if not result.ok:
        return base | {"status": "judge_failed", "reason": result.reason, "scores": None, "answer": None}
    parsed = parse_strict(result.answer, tuple(labels))
    status = "scored" if parsed.ok else "parse_failed"
    return base | {"status": status, "reason": parsed.reason, "answer": result.answer,
                   "scores": list(parsed.scores) if parsed.scores else None}


def _missing_record(unit: ScoreUnit) -> dict[str, Any]:
    return {"key": unit.key, "case": unit.case.key, "edit_type": unit.case.edit_type, "image": unit.name,
            "status": "judge_failed", "reason": unit.failure or "missing image", "scores": None, "answer": None,
            "cached": False, "attempts": 0}


def _inventory(images_dir: Path, case_set: CaseSet, cases: list[Case]) -> dict[str, Any]:
    """What else is in a scored folder: PNGs of other cases (error if not in the case file), other files."""
    known = {x.key for x in case_set.cases}
    selected = {x.key for x in cases}
    unknown, others, skipped = [], [], []
    for p in sorted(images_dir.iterdir()):
        if is_lock_file(p.name):
            continue
        if p.suffix.lower() != ".png" or not p.is_file():
            skipped.append(p.name)
        elif p.stem not in known:
            unknown.append(p.name)
        elif p.stem not in selected:
            others.append(p.name)
    if unknown:
        raise HarnessError(f"{images_dir}: {len(unknown)} image(s) match no case of {case_set.label} "
                           f"({listing(unknown)}); wrong --cases/--case-version, or remove them")
    return {"skipped_files": skipped, "not_selected_images": len(others)}
