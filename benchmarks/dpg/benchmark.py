"""The DPG-Bench benchmark's own parts: dense prompts → 4 images each → VQA answers → strict and parity scores.

Everything else (run folder, resume, ranks and shards, scoring manifests, store) is the engine's. A run keeps
image k of a prompt in ``images/<id>/<k>.png`` (seed S+k) and writes the official 2×2 tiles ``tiles/<id>.png``
with its results; ``harness score dpg --images FOLDER --resolution R`` scores a folder of official tiles
made anywhere (docs/dpg.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.api.benchmark import Benchmark, Discovery, Generated, Plan, Sample, ScorePlan, Stage, WorkUnit
from harness.benchmarks.dpg import report, results
from harness.benchmarks.dpg.data import Prompt, PromptSet, Question, check_item_id, load_prompt_set, prompt_set_id
from harness.benchmarks.dpg.tiles import boxes
from harness.core.errors import HarnessError
from harness.core.fsio import atomic_write_text, is_lock_file
from harness.core.hashing import content_hash, sha256_file
from harness.core.jsonio import dumps, load_json
from harness.core.options import INTEGER, POSITIVE_INT, Check, opt, split_list
from harness.core.paths import inside, safe_name

PIC_NUM = Check("an integer from 1 to 4 (the official --pic-num)",
                lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4, int)


@dataclass
class DPGConfig:
    """``harness run dpg`` / ``harness score dpg`` settings."""

    prompts: str = opt("official", stage="score",
                       help="'official' (1,065 prompts and the question CSV, downloaded and checked by git ids), "
                            "'demo' (6 built-in), or a folder holding dpg_bench.csv and prompts/")
    data_dir: str | None = opt(None, stage="score",
                               help="offline copy of the official dpg_bench folder (dpg_bench.csv + prompts/; "
                                    "checked by git ids)")
    families: str | None = opt(None, stage="score",
                               help="comma-separated prompt families (partiprompts, COCOval, countbench, ...; "
                                    "default: all)")
    limit: int | None = opt(None, check=POSITIVE_INT, stage="score", help="at most N prompts per family")
    images_per_prompt: int = opt(4, check=PIC_NUM, stage="score",
                                 help="images per prompt, tiled 2x2 (the official --pic-num; 4 as dist_eval.sh)")
    seed: int = opt(42, check=INTEGER, help="image k of every prompt uses seed S+k (as GenEval)")
    batch_size: int | None = opt(None, check=POSITIVE_INT,
                                 help="images per generation call (default: images-per-prompt); part of the run's "
                                      "identity")
    resolution: int | None = opt(None, check=POSITIVE_INT, stage="score",
                                 help="tile side R of a folder of official 2Rx2R tiles (`harness score`; required "
                                      "there, as the official --resolution)")
    vqa: str = opt("mplug", stage="score",
                   help="VQA scorer: mplug (official, needs ModelScope), transformers, openai, tiny (random, "
                        "demo only) or any `harness list scorers` vqa-* name")
    vqa_args: str = opt("", stage="score",
                        help="VQA options key=value,... (transformers: weights, revision, batch_size; openai: "
                             "model, base_url, api_key_env, concurrency, ...; mplug: model, revision)")
    parity: bool = opt(False, stage="score",
                       help="headline numbers from the official scorer's rules (first CSV row skipped, failed "
                            "images dropped, last-tile raw categories); both are always computed")
    score_batch_size: int = opt(4, check=POSITIVE_INT, stage="score", help="images per durable record batch")
    device: str = opt("auto", stage="score", help="device of the VQA model (auto, cpu, cuda:0)")


@dataclass(frozen=True)
class VQAUnit:
    """One image to question: a single image, or tile ``index`` of an official 2×2 tile (``box``)."""

    item_id: str
    path: Path
    file: str
    sha256: str
    index: int
    box: tuple[int, int, int, int] | None
    questions: tuple[str, ...]
    key: str
    #: why the model made no image (None: it did)
    failure: str | None = None

    @property
    def name(self) -> str:
        return self.file if self.box is None else f"{self.file}#{self.index}"


class DPG(Benchmark):
    """DPG-Bench (docs/dpg.md): 1,065 dense prompts × 4 images, mPLUG VQA on DSG questions, score × 100."""

    name: ClassVar[str] = "dpg"
    capability: ClassVar[str] = "generate"
    Config: ClassVar[type] = DPGConfig
    scored_verb: ClassVar[str] = "answered"
    threshold: ClassVar[float] = 1.0
    comparison: ClassVar[str] = "paired-mean"

    def __init__(self, config: Any = None, **values: Any):
        super().__init__(config, **values)
        self._scorer: Any = None
        self._set: PromptSet | None = None
        self.build_scorer()  # checks --vqa and --vqa-args before any work

    # -- data ------------------------------------------------------------------------------------------------
    def prompt_set(self) -> PromptSet:
        if self._set is None:
            self._set = load_prompt_set(self.config.prompts, self.config.data_dir)
        return self._set

    def selected(self) -> list[Prompt]:
        families = split_list(self.config.families)
        return self.prompt_set().select(families, self.config.limit)

    def _set_extra(self, found: PromptSet, items: Sequence[Prompt]) -> dict[str, Any]:
        return found.provenance() | {"sha256": prompt_set_id(found, [p.id for p in items]), "prompts": len(items)}

    # -- planning and generation ---------------------------------------------------------------------------------
    def plan(self, model: Any) -> Plan:
        c = self.config
        found, items = self.prompt_set(), self.selected()
        config = {
            "benchmark": self.name, "prompts": self._set_extra(found, items) | {"ids": [p.id for p in items]},
            "images_per_prompt": c.images_per_prompt, "seed": c.seed, "batch_size": c.batch_size or c.images_per_prompt,
            "model": model.fingerprint(), "model_hash": model.model_hash(),
        }
        return self._plan(items, config, {"data_warnings": list(found.warnings)} if found.warnings else {})

    def _plan(self, items: Sequence[Prompt], config: dict[str, Any], provenance: dict[str, Any] | None = None) -> Plan:
        units = [WorkUnit(self.name, p.id, p.sha256, k, config["seed"] + k, config["model_hash"])
                 for p in items for k in range(config["images_per_prompt"])]
        return Plan(config, list(items), units, config["batch_size"], provenance=provenance or {})

    def prepare(self, out: Path, plan: Plan) -> None:
        """``prompts.json``: the selected prompts with their question rows (rebuilds the plan offline)."""
        if not (out / "prompts.json").is_file():
            data = [{"id": p.id, "text": p.text, "questions": [q.as_list() for q in p.questions]} for p in plan.items]
            atomic_write_text(out / "prompts.json", dumps(data, ensure_ascii=False) + "\n")

    def plan_from_run(self, out: Path, manifest: dict[str, Any]) -> Plan:
        where = str(out / "prompts.json")
        data = load_json(out / "prompts.json", "it is written by `harness run dpg`; rerun it", expect=list)
        items = []
        for entry in data:
            if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
                raise HarnessError(f"{where}: malformed entry; rerun `harness run dpg`")
            item = check_item_id(entry.get("id"), where)
            items.append(Prompt(item, entry["text"], tuple(Question.from_list(q, where) for q in entry["questions"])))
        config = manifest["config"]
        if [p.id for p in items] != config["prompts"]["ids"]:
            raise HarnessError(f"{where}: prompt ids differ from run.json's; restore the file or rerun `harness run`")
        return self._plan(items, config)

    def image_path(self, unit: WorkUnit) -> str:
        return f"images/{safe_name(unit.item_id, what='item_id', where='prompt set')}/{unit.sample_index}.png"

    def generate(self, model: Any, units: list[WorkUnit], plan: Plan) -> list[Generated]:
        text = {p.id: p.text for p in plan.items}
        return [Generated(im) for im in model.generate([text[u.item_id] for u in units], [u.seed for u in units])]

    def run_extra(self, plan: Plan) -> dict[str, Any]:
        prompts = {k: v for k, v in plan.config["prompts"].items() if k != "ids"}
        return {"prompt_set": prompts, "model": plan.config["model"], "seed": plan.config["seed"],
                "expected_images": len(plan.units)}

    # -- scoring -------------------------------------------------------------------------------------------------
    def build_scorer(self) -> Any:
        from harness.registry import registry
        from harness.scorers.vqa import VQAScorer

        if self._scorer is None:
            name = self.config.vqa if self.config.vqa.startswith("vqa-") else f"vqa-{self.config.vqa}"
            cls = registry("scorers").load(name)
            if not issubclass(cls, VQAScorer):
                raise HarnessError(f"--vqa {self.config.vqa}: scorer {name!r} is not a VQA scorer "
                                   "(harness.scorers.vqa.VQAScorer); `harness list scorers` names them")
            extra = {"device": self.config.device} if "device" in cls.defaults else {}
            self._scorer = cls.from_text(self.config.vqa_args, **extra)
        return self._scorer

    def discover(self, images_dir: Path) -> Discovery:
        """A folder of official tiles ``<id>.<ext>``: every entry whose key (the name up to its first dot) is a
        selected prompt and that opens as an image; everything else is listed as skipped, with why."""
        from PIL import Image

        from harness.core.images import check_pixels

        self._resolution()
        found, items = self.prompt_set(), self.selected()
        ids = {p.id for p in items}
        samples, skipped = [], []
        for entry in sorted(os.listdir(images_dir)):
            key = entry.split(".")[0]
            if is_lock_file(entry):
                continue
            try:
                path = inside(images_dir, entry, what="image")
            except HarnessError:
                skipped.append([entry, "links outside the folder"])
                continue
            if path.is_dir() or key not in ids:
                skipped.append([entry, "a folder" if path.is_dir() else f"no selected prompt {key!r}"])
                continue
            check_pixels(path, "tile")
            try:
                with Image.open(path) as im:
                    im.verify()
            except (OSError, SyntaxError, ValueError) as exc:
                skipped.append([entry, f"not a readable image ({type(exc).__name__})"])
                continue
            samples.append(Sample(path, entry, key, sha256_file(path)))
        if not samples:
            raise HarnessError(f"--images {images_dir}: no tile of a selected prompt (<id>.png named by the CSV's "
                               "item_id); is it the right folder?")
        return Discovery(items, samples, {"skipped_files": skipped, "prompt_set": self._set_extra(found, items)},
                         {"prompt_set": found.provenance()})

    def _resolution(self) -> int:
        if self.config.resolution is None:
            raise HarnessError("--resolution R is required to score a folder of 2x2 tiles (each tile is 2R x 2R, "
                               "as the official --resolution); a `harness run dpg` folder needs none")
        return int(self.config.resolution)

    def score_plan(self, scorer: Any, items: Sequence[Any], samples: list[Sample], images_dir: Path) -> ScorePlan:
        from harness.registry import provenance_of

        c = self.config
        fingerprint = scorer.fingerprint()
        scorer_hash = content_hash(fingerprint, 12)
        asked = {p.id: p.asked() for p in items}
        singles = all("/" in s.name for s in samples)
        units = []
        for s in samples:
            if singles:
                units.append(_unit(s, int(Path(s.name).stem), None, asked[s.item_id], scorer_hash))
            else:
                r = self._resolution()
                units += [_unit(s, k, boxes(r)[k], asked[s.item_id], scorer_hash) for k in range(c.images_per_prompt)]
        per_item: dict[str, int] = {}
        for s in samples:
            per_item[s.item_id] = per_item.get(s.item_id, 0) + 1
        context = {"mode": "parity" if c.parity else "strict", "layout": "singles" if singles else "tiles",
                   "images_per_prompt": max(per_item.values()) if singles else c.images_per_prompt,
                   "resolution": None if singles else c.resolution, "items": [p.id for p in items],
                   "families": {p.id: p.family for p in items}, "texts": {p.id: p.text for p in items},
                   "rows": [q.as_list() for p in items for q in p.questions]}
        # a unit's name in the manifest is its image file (the engine checks those); its records say which tile
        stage = Stage(f"vqa-{scorer_hash}", units, _answer_batch(scorer), c.score_batch_size, desc="vqa",
                      unit_name=lambda u: u.file, is_final=lambda r: r["status"] != "vqa_failed", whole_batches=False)
        label = ("DPG-Bench (official mPLUG)" if scorer.official
                 else f"DPG-Bench-{scorer.describe()} (alternative VQA, not the official number)")
        vqa = {"scorer": scorer.name, "model": scorer.describe(), "official": scorer.official}
        return ScorePlan(fingerprint, label, [stage], context, provenance={"vqa": provenance_of("scorers", scorer)},
                         extra={"vqa": vqa})

    def summarize(self, records: dict[str, list[dict[str, Any]]], manifest: dict[str, Any]) -> dict[str, Any]:
        return results.summarize(next(iter(records.values())), manifest)

    def write_results(self, records: dict[str, list[dict[str, Any]]], out: Path, images_dir: Path,
                      manifest: dict[str, Any]) -> None:
        results.write_results(next(iter(records.values())), out, images_dir, manifest)

    store_rows = staticmethod(results.store_rows)
    metric_rows = staticmethod(results.metric_rows)
    format_summary = staticmethod(results.format_table)

    # -- comparison and reports ----------------------------------------------------------------------------------
    paired_scores = staticmethod(report.paired_scores)
    summary_rows = staticmethod(report.summary_rows)
    report_section = staticmethod(report.section)
    published = staticmethod(report.published)


def _unit(sample: Sample, index: int, box: tuple[int, int, int, int] | None, questions: tuple[str, ...],
          scorer_hash: str) -> VQAUnit:
    parts = [scorer_hash, sample.sha256, list(box) if box else None, list(questions)]
    key = content_hash(parts + ([sample.failure] if sample.failure is not None else []), 24)
    return VQAUnit(sample.item_id, sample.path, sample.name, sample.sha256, index, box, questions, key,
                   sample.failure)


def _answer_batch(scorer: Any) -> Callable[[list[VQAUnit]], list[dict[str, Any]]]:
    """The VQA stage: each unit's image (cropped to its box) and all its questions in one ``answer`` call.

    An image the model did not make is recorded ``generation_failed`` (the rerun makes it); an unreadable image
    ``image_failed``; a VQA error (other than a stopping one) ``vqa_failed``,
    which the next run retries."""
    def process(batch: list[VQAUnit]) -> list[dict[str, Any]]:
        from PIL import Image

        from harness.core.images import check_pixels
        from harness.scorers.vqa import VQAFailure

        opened: dict[Path, Any] = {}
        out = []
        for u in batch:
            base = {"item_id": u.item_id, "image": u.name, "file": u.file, "index": u.index,
                    "box": list(u.box) if u.box else None, "sha256": u.sha256}
            if u.failure is not None:  # the model made no image: a zero in strict, dropped in parity
                out.append(base | {"status": "generation_failed", "reason": u.failure})
                continue
            try:
                if u.path not in opened:
                    check_pixels(u.path, "image")
                    with Image.open(u.path) as im:
                        im.load()
                        opened[u.path] = im.copy()
                image = opened[u.path]
            except (OSError, SyntaxError, ValueError) as exc:
                out.append(base | {"status": "image_failed", "reason": f"not a readable image ({exc})"})
                continue
            crop = image.crop(u.box) if u.box else image
            try:
                answers = scorer.answer(crop, u.questions)
                if len(answers) != len(u.questions):
                    raise VQAFailure(f"{len(answers)} answers for {len(u.questions)} questions")
            except HarnessError:
                raise
            except Exception as exc:  # the official scorer drops the image on any error; we record and retry
                reason = exc if isinstance(exc, VQAFailure) else f"{type(exc).__name__}: {exc}"
                out.append(base | {"status": "vqa_failed", "reason": str(reason)[:300], "size": list(image.size)})
                continue
            out.append(base | {"status": "answered", "size": list(image.size),
                               "answers": dict(zip(u.questions, answers, strict=True))})
        return out

    return process
