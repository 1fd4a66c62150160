"""The GenEval benchmark: prompts → work units → images (official layout) → verdicts → summary → store.

``run`` generates with any registered model that can ``generate`` and then scores; ``score`` scores an
existing image folder (ours or anyone's). Both stages resume: a rerun of the same command skips every
unit already recorded and finishes with the same ``summary.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.geneval.prompts import PromptItem, load_prompts
from benchmarks.geneval.rules import Options
from benchmarks.geneval.score import GenEvalScorer, Sample, discover, score_samples, write_results
from harness import __version__
from harness.errors import HarnessError
from harness.runner import run_stage
from harness.store import Store
from harness.units import RecordLog, WorkUnit, atomic_write_bytes, atomic_write_text, content_hash

Progress = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


@contextmanager
def no_progress(desc: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress factory that shows nothing (library use and tests)."""
    yield lambda n: None


@dataclass
class Outcome:
    """What a run or score produced: where, its run id, and the summary."""

    out: Path
    run_id: str
    summary: dict[str, Any]
    generated: int = 0


class GenEval:
    """GenEval (official rules, geneval.md): 553 prompts × 4 images, six tags, overall = mean of tags."""

    name = "geneval"
    capability = "generate"

    # -- CLI ------------------------------------------------------------------------------------------
    @staticmethod
    def add_scoring_arguments(p: argparse.ArgumentParser) -> None:
        g = p.add_argument_group("scoring")
        g.add_argument("--detector", default="mask2former-hf",
                       help="detector backend (`harness list detectors`); 'tiny' = random weights, demo only")
        g.add_argument("--detector-args", default="", help="detector options key=value,... (weights, device)")
        g.add_argument("--clip", default="ViT-L-14:openai",
                       help="open_clip ARCH:PRETRAINED for colours (PRETRAINED may be a local .pt); 'tiny' = random")
        g.add_argument("--options", default="",
                       help="GenEval constants key=value,...: threshold, counting_threshold, max_objects, "
                            "max_overlap, position_threshold (official defaults if omitted)")
        g.add_argument("--score-batch-size", type=int, default=4, help="images per detector/CLIP batch")
        g.add_argument("--device", default="auto", help="device for detector and CLIP (auto, cpu, cuda:0)")

    @classmethod
    def add_run_arguments(cls, p: argparse.ArgumentParser) -> None:
        g = p.add_argument_group("geneval")
        g.add_argument("--prompts", default="official",
                       help="'official' (553 prompts, downloaded and sha256-checked), 'demo' (24 built-in), or "
                            "a custom metadata JSONL path")
        g.add_argument("--metadata", default=None,
                       help="local copy of the official evaluation_metadata.jsonl (offline; sha256-checked)")
        g.add_argument("--tags", default=None, help="comma-separated tags to run (default: all six)")
        g.add_argument("--limit", type=int, default=None, help="at most N prompts per tag")
        g.add_argument("--images-per-prompt", type=int, default=4)
        g.add_argument("--seed", type=int, default=42, help="image k of every prompt uses seed S+k")
        g.add_argument("--batch-size", type=int, default=None,
                       help="images per generation call (default: images-per-prompt); part of the run's identity")
        g.add_argument("--no-score", action="store_true", help="generate only; score later with `harness score`")
        cls.add_scoring_arguments(p)

    # -- stages ---------------------------------------------------------------------------------------
    def build_scorer(self, args: argparse.Namespace) -> GenEvalScorer:
        """Load detector and CLIP once for this process."""
        from benchmarks.geneval.colors import ColorClassifier
        from harness.models.base import parse_model_args
        from harness.registry import registry

        detector_cls = registry("detectors").load(args.detector)
        det_opts = parse_model_args(args.detector_args)
        if args.device != "auto":
            det_opts.setdefault("device", args.device)
        detector = detector_cls(**det_opts)
        colors = ColorClassifier(args.clip, device=args.device)
        return GenEvalScorer(detector, colors, parse_options(args.options))

    def run(self, args: argparse.Namespace, model: Any, *, store: Store, provenance: dict[str, Any],
            progress: Progress = no_progress) -> Outcome:
        """Generate the selected prompts' images (resumable), then score them (resumable)."""
        if "generate" not in model.capabilities:
            raise HarnessError(f"model {model.name!r} cannot generate images; GenEval needs text-to-image")
        if args.images_per_prompt < 1:
            raise HarnessError("--images-per-prompt must be >= 1")
        prompt_set = load_prompts(args.prompts, args.metadata)
        tags = [t.strip() for t in args.tags.split(",")] if args.tags else None
        items = prompt_set.select(tags, args.limit)
        batch_size = args.batch_size or args.images_per_prompt
        model_hash = model.model_hash()
        config = {
            "benchmark": self.name,
            "prompts": {"name": prompt_set.name, "sha256": prompt_set.sha256, "indices": [i.index for i in items]},
            "images_per_prompt": args.images_per_prompt, "seed": args.seed, "batch_size": batch_size,
            "model": model.fingerprint(), "model_hash": model_hash,
        }
        run_id = f"geneval-{content_hash(config, 12)}"
        out = Path(args.out) if args.out else Path("runs") / "geneval" / f"{model.name}-{run_id[8:16]}"
        _open_manifest(out, run_id, config, provenance)
        store.upsert_run(run_id, self.name, status="generating", model=model.name, model_hash=model_hash,
                         out_dir=str(out), config=config, provenance=provenance, harness_version=__version__)

        images_dir = out / "images"
        for item in items:
            meta_path = images_dir / item.folder / "metadata.jsonl"
            if not meta_path.is_file():
                atomic_write_text(meta_path, json.dumps(item.metadata), fsync=False)
        by_id = {item.folder: item for item in items}
        units = [WorkUnit(self.name, item.folder, item.sha256(), k, args.seed + k, model_hash)
                 for item in items for k in range(args.images_per_prompt)]

        def generate(batch: list[WorkUnit]) -> list[dict[str, Any]]:
            return _generate_batch(model, batch, by_id, images_dir)

        records_dir = out / "records"
        with RecordLog(records_dir, "generate") as log:
            already = len(log.read())
            try:
                with progress("generate", len(units)) as tick:
                    done = run_stage(units, key=lambda u: u.key, process=generate, log=log,
                                     batch_size=batch_size, progress=tick)
            finally:
                store.add_samples(run_id, log.read().values())
        generated = len(units) - min(already, len(units))
        for unit in units:  # a record whose image vanished is a lost sample: regenerate, never score less
            if not (out / done[unit.key]["image"]).is_file():
                raise HarnessError(f"{out / done[unit.key]['image']}: image recorded but missing; delete "
                                   f"{records_dir} entries or the run folder and rerun to regenerate it")
        if args.no_score:
            store.upsert_run(run_id, self.name, status="generated")
            return Outcome(out, run_id, {}, generated)

        samples = [Sample(out / done[u.key]["image"], u.item_id, by_id[u.item_id].metadata, done[u.key]["sha256"])
                   for u in units]
        summary = self._score(args, samples, out, images_dir, run_id, store, progress,
                              extra={"prompt_set": config["prompts"] | {"indices": len(items)},
                                     "model": config["model"], "expected_images": len(units)},
                              provenance=provenance)
        return Outcome(out, run_id, summary, generated)

    def score(self, args: argparse.Namespace, *, store: Store, provenance: dict[str, Any],
              progress: Progress = no_progress) -> Outcome:
        """Score an existing image folder in the official layout (ours or anyone's)."""
        images_dir = Path(args.images)
        found = discover(images_dir)
        parent_manifest = images_dir.parent / "run.json"
        if images_dir.name == "images" and parent_manifest.is_file():
            out = Path(args.out) if args.out else images_dir.parent
            run_id = json.loads(parent_manifest.read_text())["run_id"]
        else:
            out = Path(args.out) if args.out else images_dir
            run_id = f"geneval-score-{content_hash(str(images_dir.resolve()), 12)}"
        store.upsert_run(run_id, self.name, status="scoring", model="external", out_dir=str(out),
                         config={"images": str(images_dir.resolve())}, provenance=provenance,
                         harness_version=__version__)
        samples = [Sample(s.path, s.item_id, s.metadata, s.sha256) for s in found.samples]
        counts: dict[str, int] = {}
        for s in samples:
            counts[s.item_id] = counts.get(s.item_id, 0) + 1
        most = max(counts.values())
        extra = {"skipped_files": found.skipped,
                 "prompts_with_fewer_images": sorted(k for k, v in counts.items() if v < most)}
        summary = self._score(args, samples, out, images_dir, run_id, store, progress, extra=extra,
                              provenance=provenance)
        return Outcome(out, run_id, summary)

    def _score(self, args: argparse.Namespace, samples: list[Sample], out: Path, images_dir: Path, run_id: str,
               store: Store, progress: Progress, *, extra: dict[str, Any], provenance: dict[str, Any]
               ) -> dict[str, Any]:
        from benchmarks.geneval.summary import metric_rows, summarize
        from harness.registry import registry

        scorer = self.build_scorer(args)
        provenance = {**provenance, "detector": registry("detectors").entry(args.detector).provenance()}
        store.upsert_run(run_id, self.name, status="scoring")
        with progress("score", len(samples)) as tick:
            try:
                records = score_samples(samples, scorer, out / "records", batch_size=args.score_batch_size,
                                        progress=tick)
            finally:
                _ingest_scores(store, run_id, scorer, out / "records")
        write_results(records, images_dir, out / "results.jsonl")
        summary = {
            "benchmark": self.name, "label": scorer.label, "run_id": run_id,
            "scorer": scorer.fingerprint(), "scorer_hash": scorer.scorer_hash(),
            **summarize(records), **extra, "provenance": provenance, "harness_version": __version__,
        }
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
        store.set_metrics(run_id, scorer.scorer_hash(), self.name, metric_rows(summary))
        store.upsert_run(run_id, self.name, status="finished")
        return summary


def parse_options(text: str) -> Options:
    """``--options threshold=0.3,max_objects=16`` → :class:`Options` (unknown keys are an error)."""
    from harness.models.base import parse_model_args

    values = parse_model_args(text)
    fields = Options.__dataclass_fields__
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise HarnessError(f"--options: unknown key(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    return Options(**values)


def _open_manifest(out: Path, run_id: str, config: dict[str, Any], provenance: dict[str, Any]) -> None:
    """Create ``run.json`` or check that the folder holds this same run (then it resumes)."""
    path = out / "run.json"
    if path.is_file():
        manifest = json.loads(path.read_text())
        if manifest.get("run_id") != run_id:
            old = manifest.get("config", {})
            changed = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            raise HarnessError(
                f"{out}: holds run {manifest.get('run_id')} made with other settings (differs in: "
                f"{', '.join(changed)}); rerun with the same settings to resume, or pass another --out"
            )
        return
    manifest = {"run_id": run_id, "config": config, "provenance": provenance, "created": time.time(),
                "environment": _environment()}
    atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _environment() -> dict[str, Any]:
    import platform
    from importlib import metadata

    versions = {}
    for dist in ("torch", "diffusers", "transformers", "open_clip_torch", "accelerate", "numpy", "pillow"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": versions,
            "harness": __version__}


def _generate_batch(model: Any, batch: list[WorkUnit], items: dict[str, PromptItem],
                    images_dir: Path) -> list[dict[str, Any]]:
    prompts = [items[u.item_id].prompt for u in batch]
    start = time.perf_counter()
    images = model.generate(prompts, [u.seed for u in batch])
    seconds = (time.perf_counter() - start) / len(batch)
    if len(images) != len(batch):
        raise HarnessError(f"model {model.name!r} returned {len(images)} images for {len(batch)} prompts")
    records = []
    for unit, image in zip(batch, images, strict=True):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        data = buf.getvalue()
        rel = f"images/{unit.item_id}/samples/{unit.sample_index:04d}.png"
        atomic_write_bytes(images_dir.parent / rel, data, fsync=False)  # the record log is fsynced after
        records.append({"key": unit.key, "item_id": unit.item_id, "sample_index": unit.sample_index,
                        "seed": unit.seed, "image": rel, "sha256": _sha256(data), "seconds": seconds})
    return records


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _ingest_scores(store: Store, run_id: str, scorer: GenEvalScorer, records_dir: Path) -> None:
    log = RecordLog(records_dir, f"score-{scorer.scorer_hash()}")
    store.add_scores(run_id, scorer.scorer_hash(), log.read().values())
