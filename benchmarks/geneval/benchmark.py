"""The GenEval benchmark's own parts: prompts → work units → images in the official layout → verdicts.

Everything else (run folder, resume, ranks and shards, scoring manifests, store) is the engine's. The
official layout is ``images/NNNNN/metadata.jsonl`` and ``images/NNNNN/samples/KKKK.png`` (docs/geneval.md,
'Image layout'), so the unmodified official scorer can re-score a run's folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.api.benchmark import Benchmark, Discovery, Generated, Plan, Sample, ScorePlan, Stage, WorkUnit
from harness.benchmarks.geneval import report
from harness.benchmarks.geneval import summary as tables
from harness.benchmarks.geneval.prompts import PromptItem, load_prompts, prompt_folder
from harness.benchmarks.geneval.rules import TAGS
from harness.benchmarks.geneval.score import GenEvalScorer
from harness.core.fsio import atomic_write_text
from harness.core.hashing import content_hash
from harness.core.jsonio import dumps, load_json
from harness.core.options import INTEGER, POSITIVE_INT, Check, opt, split_list

TAG_LIST = Check(f"comma-separated tags among {', '.join(TAGS)}",
                 lambda v: isinstance(v, str) and all(t.strip() in TAGS for t in v.split(",") if t.strip()))


@dataclass
class GenEvalConfig:
    """``harness run geneval`` / ``harness score geneval`` settings."""

    prompts: str = opt("official", help="'official' (553 prompts, downloaded and sha256-checked), 'demo' (24 "
                                        "built-in), or a custom metadata JSONL path")
    metadata: str | None = opt(None, help="local copy of the official evaluation_metadata.jsonl (offline; "
                                          "sha256-checked)")
    tags: str | None = opt(None, check=TAG_LIST, help="comma-separated tags to run (default: all six)")
    limit: int | None = opt(None, check=POSITIVE_INT, help="at most N prompts per tag")
    images_per_prompt: int = opt(4, check=POSITIVE_INT, help="images per prompt")
    seed: int = opt(42, check=INTEGER, help="image k of every prompt uses seed S+k")
    batch_size: int | None = opt(None, check=POSITIVE_INT,
                                 help="images per generation call (default: images-per-prompt); part of the run's "
                                      "identity")
    detector: str = opt("mask2former-hf", stage="score",
                        help="detector backend (`harness list detectors`); 'tiny' = random weights, demo only")
    detector_args: str = opt("", stage="score", help="detector options key=value,... (weights, device)")
    clip: str = opt("ViT-L-14:openai", stage="score",
                    help="open_clip ARCH:PRETRAINED for colours (PRETRAINED may be a local .pt); 'tiny' = random")
    options: str = opt("", stage="score",
                       help="GenEval constants key=value,...: threshold, counting_threshold, max_objects, "
                            "max_overlap, position_threshold (official defaults if omitted)")
    score_batch_size: int = opt(4, check=POSITIVE_INT, stage="score", help="images per detector/CLIP batch")
    device: str = opt("auto", stage="score", help="device for detector and CLIP (auto, cpu, cuda:0)")


class GenEval(Benchmark):
    """GenEval (docs/geneval.md): 553 prompts × 4 images, six tags, overall = unweighted mean of the tags."""

    name: ClassVar[str] = "geneval"
    capability: ClassVar[str] = "generate"
    Config: ClassVar[type] = GenEvalConfig
    threshold: ClassVar[float] = 0.01
    comparison: ClassVar[str] = "stratified"

    def __init__(self, config: Any = None, **values: Any):
        super().__init__(config, **values)
        self._scorer: GenEvalScorer | None = None
        self.build_scorer()  # checks --options, --detector and its arguments before any work

    # -- planning and generation -------------------------------------------------------------------------
    def plan(self, model: Any) -> Plan:
        c = self.config
        prompt_set = load_prompts(c.prompts, c.metadata)
        tags = split_list(c.tags)
        items = prompt_set.select(tags, c.limit)
        config = {
            "benchmark": self.name,
            "prompts": {"name": prompt_set.name, "sha256": prompt_set.sha256, "indices": [i.index for i in items]},
            "images_per_prompt": c.images_per_prompt, "seed": c.seed,
            "batch_size": c.batch_size or c.images_per_prompt,
            "model": model.fingerprint(), "model_hash": model.model_hash(),
        }
        return self._plan(items, config)

    def _plan(self, items: Sequence[PromptItem], config: dict[str, Any]) -> Plan:
        units = [WorkUnit(self.name, item.folder, item.sha256(), k, config["seed"] + k, config["model_hash"])
                 for item in items for k in range(config["images_per_prompt"])]
        return Plan(config, list(items), units, config["batch_size"])

    def prepare(self, out: Path, plan: Plan) -> None:
        for item in plan.items:
            path = out / "images" / item.folder / "metadata.jsonl"
            if not path.is_file():
                atomic_write_text(path, dumps(item.metadata), fsync=False)

    def plan_from_run(self, out: Path, manifest: dict[str, Any]) -> Plan:
        fix = "it is written by `harness run`, rerun it"
        items = []
        for index in manifest["config"]["prompts"]["indices"]:
            folder = prompt_folder(index, where=str(out / "run.json"))
            items.append(PromptItem(index, load_json(out / "images" / folder / "metadata.jsonl", fix)))
        return self._plan(items, manifest["config"])

    def image_path(self, unit: WorkUnit) -> str:
        return f"images/{unit.item_id}/samples/{unit.sample_index:04d}.png"

    def generate(self, model: Any, units: list[WorkUnit], plan: Plan) -> list[Generated]:
        prompts = {item.folder: item.prompt for item in plan.items}
        images = model.generate([prompts[u.item_id] for u in units], [u.seed for u in units])
        return [Generated(image) for image in images]

    def run_extra(self, plan: Plan) -> dict[str, Any]:
        return {"prompt_set": plan.config["prompts"] | {"indices": len(plan.items)}, "model": plan.config["model"],
                "expected_images": len(plan.units)}

    # -- scoring -----------------------------------------------------------------------------------------
    def build_scorer(self) -> GenEvalScorer:
        c = self.config
        if self._scorer is None:
            self._scorer = GenEvalScorer(detector=c.detector, detector_args=c.detector_args, clip=c.clip,
                                         device=c.device, options=c.options)
        return self._scorer

    def discover(self, images_dir: Path) -> Discovery:
        from harness.benchmarks.geneval.score import discover

        found = discover(images_dir)
        items = {s.item_id: PromptItem(int(s.item_id), s.metadata) for s in found.samples}
        counts: dict[str, int] = {}
        for s in found.samples:
            counts[s.item_id] = counts.get(s.item_id, 0) + 1
        most = max(counts.values())
        samples = [Sample(s.path, s.name, s.item_id, s.sha256) for s in found.samples]
        return Discovery(list(items.values()), samples,
                         {"skipped_files": found.skipped,
                          "prompts_with_fewer_images": sorted(k for k, v in counts.items() if v < most)})

    def discover_extra(self, images_dir: Path) -> dict[str, Any]:
        from harness.benchmarks.geneval.score import discover

        skipped = discover(images_dir).skipped
        return {"skipped_files": skipped} if skipped else {}

    def score_plan(self, scorer: Any, items: Sequence[Any], samples: list[Sample], images_dir: Path) -> ScorePlan:
        from harness.benchmarks.geneval.score import Sample as Scored
        from harness.benchmarks.geneval.score import score_key
        from harness.registry import provenance_of

        metadata = {item.folder: item.metadata for item in items}
        units = sorted((Scored(s.path, s.item_id, metadata[s.item_id], s.sha256, s.failure) for s in samples),
                       key=lambda s: s.name)
        fingerprint = scorer.fingerprint()
        scorer_hash = content_hash(fingerprint, 12)
        stage = Stage(f"score-{scorer_hash}", units, scorer.score_batch, self.config.score_batch_size,
                      key=lambda s: score_key(s, scorer_hash))
        return ScorePlan(fingerprint, scorer.label, [stage],
                         provenance={"detector": provenance_of("detectors", scorer.detector_cls)})

    def summarize(self, records: dict[str, list[dict[str, Any]]], manifest: dict[str, Any]) -> dict[str, Any]:
        return {"scorer": manifest["scorer"], **tables.summarize(next(iter(records.values())))}

    def write_results(self, records: dict[str, list[dict[str, Any]]], out: Path, images_dir: Path,
                      manifest: dict[str, Any]) -> None:
        from harness.benchmarks.geneval.score import write_results

        write_results(next(iter(records.values())), images_dir, out / "results.jsonl")

    metric_rows = staticmethod(tables.metric_rows)
    format_summary = staticmethod(tables.format_table)

    # -- comparison and reports --------------------------------------------------------------------------
    paired_scores = staticmethod(report.paired_scores)
    summary_rows = staticmethod(report.summary_rows)

    report_section = staticmethod(report.section)
    published = staticmethod(report.published)
