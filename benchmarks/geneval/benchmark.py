"""The GenEval benchmark: prompts → work units → images (official layout) → verdicts → summary → store.

``run`` generates with any registered model that can ``generate`` and then scores; ``score`` scores an
existing image folder (ours or anyone's). Both stages resume: a rerun of the same command skips every
unit already recorded and finishes with the same ``summary.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.geneval.colors import clip_spec_arg
from benchmarks.geneval.prompts import PromptItem, is_prompt_folder, load_prompts, prompt_folder
from benchmarks.geneval.rules import Options
from benchmarks.geneval.score import GenEvalScorer, Sample, discover, score_key, score_samples, write_results
from harness import __version__
from harness.core.jsonio import dumps, load_json
from harness.core.options import FRACTION, NON_NEGATIVE_NUMBER, POSITIVE_INT, check_options
from harness.distributed import Shard
from harness.errors import HarnessError
from harness.runner import run_stage
from harness.stages import (
    SINGLE,
    IncompleteRun,
    Outcome,
    Progress,
    is_run_folder,
    listing,
    no_progress,
    open_manifest,
    open_scoring_row,
    own_run_folder,
    read_json,
    recorded_image,
    scoring_images_dir,
    scoring_run_id,
    shard_token,
)
from harness.store import Store
from harness.units import (
    RecordLog,
    WorkUnit,
    atomic_write_bytes,
    atomic_write_text,
    content_hash,
    repair_record_file,
)


@dataclass
class RunPlan:
    """A GenEval run's identity: folder, id, settings and prompts; its work units derive from these."""

    out: Path
    run_id: str
    config: dict[str, Any]
    items: list[PromptItem]

    def units(self) -> list[WorkUnit]:
        c = self.config
        return [WorkUnit("geneval", item.folder, item.sha256(), k, c["seed"] + k, c["model_hash"])
                for item in self.items for k in range(c["images_per_prompt"])]

    @classmethod
    def from_manifest(cls, out: Path) -> RunPlan:
        """Rebuild the plan of an existing run from ``run.json`` and its per-prompt metadata files."""
        fix = "it is written by `harness run`, rerun it"
        manifest = load_json(out / "run.json", fix)
        items = []
        for index in manifest["config"]["prompts"]["indices"]:
            folder = prompt_folder(index, where=str(out / "run.json"))
            items.append(PromptItem(index, load_json(out / "images" / folder / "metadata.jsonl", fix)))
        return cls(out, manifest["run_id"], manifest["config"], items)


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
        g.add_argument("--clip", default="ViT-L-14:openai", type=clip_spec_arg,
                       help="open_clip ARCH:PRETRAINED for colours (PRETRAINED may be a local .pt); 'tiny' = random")
        g.add_argument("--options", default="",
                       help="GenEval constants key=value,...: threshold, counting_threshold, max_objects, "
                            "max_overlap, position_threshold (official defaults if omitted)")
        g.add_argument("--score-batch-size", type=POSITIVE_INT.argtype(), default=4,
                       help="images per detector/CLIP batch")
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
        g.add_argument("--limit", type=POSITIVE_INT.argtype(), default=None, help="at most N prompts per tag")
        g.add_argument("--images-per-prompt", type=POSITIVE_INT.argtype(), default=4)
        g.add_argument("--seed", type=int, default=42, help="image k of every prompt uses seed S+k")
        g.add_argument("--batch-size", type=POSITIVE_INT.argtype(), default=None,
                       help="images per generation call (default: images-per-prompt); part of the run's identity")
        g.add_argument("--no-score", action="store_true", help="generate only; score later with `harness score`")
        cls.add_scoring_arguments(p)

    @staticmethod
    def format_summary(summary: dict[str, Any]) -> str:
        """The terminal table for a summary (the CLI prints it)."""
        from benchmarks.geneval.summary import format_table

        return format_table(summary)

    # -- stages ---------------------------------------------------------------------------------------
    @staticmethod
    def check_args(args: argparse.Namespace) -> None:
        """Validate the scoring options before any work: ``--options``, ``--detector`` and its arguments."""
        from harness.models.base import parse_model_args
        from harness.registry import registry

        parse_options(args.options)
        detector = registry("detectors").load(args.detector)
        if hasattr(detector, "check_options"):  # a plugin detector may check its options itself, later
            detector.check_options(parse_model_args(args.detector_args, "--detector-args"))

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

    def plan(self, args: argparse.Namespace, model: Any) -> RunPlan:
        """Prompts → work units, the run's identity and folder."""
        if "generate" not in model.capabilities:
            raise HarnessError(f"model {model.name!r} cannot generate images; GenEval needs text-to-image")
        if args.images_per_prompt < 1:
            raise HarnessError("--images-per-prompt must be >= 1")
        prompt_set = load_prompts(args.prompts, args.metadata)
        tags = [t.strip() for t in args.tags.split(",")] if args.tags else None
        items = prompt_set.select(tags, args.limit)
        config = {
            "benchmark": self.name,
            "prompts": {"name": prompt_set.name, "sha256": prompt_set.sha256, "indices": [i.index for i in items]},
            "images_per_prompt": args.images_per_prompt, "seed": args.seed,
            "batch_size": args.batch_size or args.images_per_prompt,
            "model": model.fingerprint(), "model_hash": model.model_hash(),
        }
        run_id = f"geneval-{content_hash(config, 12)}"
        out = Path(args.out) if args.out else Path("runs") / "geneval" / f"{model.name}-{run_id[8:16]}"
        return RunPlan(out, run_id, config, items)

    def run(self, args: argparse.Namespace, model: Any, *, store: Store, provenance: dict[str, Any],
            progress: Progress = no_progress, shard: Shard = SINGLE) -> Outcome:
        """Generate this shard's images (resumable), then score (resumable); rank 0 writes the results."""
        plan = self.plan(args, model)
        with own_run_folder(plan.out, shard, stage="run"):
            return self._run(args, model, plan, store=store, provenance=provenance, progress=progress, shard=shard)

    def _run(self, args: argparse.Namespace, model: Any, plan: RunPlan, *, store: Store, provenance: dict[str, Any],
             progress: Progress, shard: Shard) -> Outcome:
        out, run_id, config = plan.out, plan.run_id, plan.config
        open_manifest(out, run_id, config, provenance)
        if shard.finalizes:
            store.upsert_run(run_id, self.name, status="generating", model=model.name,
                             model_hash=config["model_hash"], out_dir=str(out), config=config,
                             provenance=provenance, harness_version=__version__)
        images_dir = out / "images"
        for item in plan.items:
            meta_path = images_dir / item.folder / "metadata.jsonl"
            if not meta_path.is_file():
                atomic_write_text(meta_path, dumps(item.metadata), fsync=False)
        by_id = {item.folder: item for item in plan.items}
        units = plan.units()

        def generate(batch: list[WorkUnit]) -> list[dict[str, Any]]:
            return _generate_batch(model, batch, by_id, images_dir)

        records_dir = out / "records"
        with RecordLog(records_dir, "generate", token=shard_token(shard)) as log:
            already = len(log.read())
            try:
                with progress("generate", -(-len(units) // shard.count)) as tick:
                    run_stage(units, key=lambda u: u.key, process=generate, log=log,
                              batch_size=config["batch_size"], shard=(shard.index, shard.count), progress=tick)
            finally:
                store.add_samples(run_id, log.read().values())
        generated = max(len(units) - already, 0)
        shard.barrier()
        if shard.jobs > 1 or args.no_score:
            if shard.finalizes:
                store.upsert_run(run_id, self.name, status="generated")
            return Outcome(out, run_id, {}, generated, partial=shard.jobs > 1)
        samples = self._generated_samples(plan)
        extra = {"prompt_set": config["prompts"] | {"indices": len(plan.items)}, "model": config["model"],
                 "expected_images": len(units)}
        outcome = self._score(args, samples, out, images_dir, run_id, store, progress, shard, extra=extra,
                              provenance=provenance)
        outcome.generated = generated
        return outcome

    def _generated_samples(self, plan: RunPlan) -> list[Sample]:
        """The run's images from the generation records; names exactly the units that are missing."""
        done = RecordLog(plan.out / "records", "generate").read()
        where = str(plan.out / "records")
        missing = [u for u in plan.units()
                   if u.key not in done or not recorded_image(plan.out, done[u.key], where).is_file()]
        if missing:
            names = [f"{u.item_id}/samples/{u.sample_index:04d}.png" for u in missing]
            raise IncompleteRun(f"{plan.out}: {len(missing)} of {len(plan.units())} images not generated yet "
                                f"({listing(names)}); rerun the same `harness run` (any number of processes, "
                                "or the missing --shard jobs) to generate them", names)
        by_id = {item.folder: item for item in plan.items}
        return [Sample(recorded_image(plan.out, done[u.key], where), u.item_id, by_id[u.item_id].metadata,
                       done[u.key]["sha256"]) for u in plan.units()]

    def score(self, args: argparse.Namespace, *, store: Store, provenance: dict[str, Any],
              progress: Progress = no_progress, shard: Shard = SINGLE) -> Outcome:
        """Score an existing image folder in the official layout (ours or anyone's)."""
        images_dir = Path(args.images)
        parent_manifest = images_dir.parent / "run.json"
        extra: dict[str, Any] = {}
        of_run = images_dir.name == "images" and is_run_folder(images_dir.parent)
        if of_run:
            out = Path(args.out) if args.out else images_dir.parent
            plan = RunPlan.from_manifest(images_dir.parent)
            source_id, scored = plan.run_id, images_dir.parent
            samples = self._generated_samples(plan)  # all planned images, or an error naming the missing ones
            extra = {"prompt_set": plan.config["prompts"] | {"indices": len(plan.items)},
                     "model": plan.config["model"], "expected_images": len(samples)}
            found = discover(images_dir)
            if found.skipped:
                extra["skipped_files"] = found.skipped
            # the same summary as `harness run` would write: the run's own provenance (model included)
            provenance = {**json.loads(parent_manifest.read_text()).get("provenance", {}), **provenance}
        else:
            out = Path(args.out) if args.out else images_dir
            source_id, scored = f"geneval-score-{content_hash(str(images_dir.resolve()), 12)}", images_dir
            found = discover(images_dir)
            samples = found.samples
            counts: dict[str, int] = {}
            for sample in samples:
                counts[sample.item_id] = counts.get(sample.item_id, 0) + 1
            most = max(counts.values())
            extra = {"skipped_files": found.skipped,
                     "prompts_with_fewer_images": sorted(k for k, v in counts.items() if v < most)}
        run_id = scoring_run_id(source_id, scored, out)
        if run_id != source_id:
            extra["scored_run"] = source_id
        with own_run_folder(out, shard, stage="score"):
            if shard.finalizes:
                open_scoring_row(store, self.name, run_id, source_id, of_run=of_run, out=out, images_dir=images_dir,
                                 model=extra.get("model", {}).get("adapter", "external"), provenance=provenance)
            return self._score(args, samples, out, images_dir, run_id, store, progress, shard, extra=extra,
                               provenance=provenance)

    def _score(self, args: argparse.Namespace, samples: list[Sample], out: Path, images_dir: Path, run_id: str,
               store: Store, progress: Progress, shard: Shard, *, extra: dict[str, Any],
               provenance: dict[str, Any]) -> Outcome:
        from harness.registry import registry

        scorer = self.build_scorer(args)
        provenance = {**provenance, "detector": registry("detectors").entry(args.detector).provenance()}
        manifest = {
            "benchmark": self.name, "run_id": run_id, "label": scorer.label, "scorer": scorer.fingerprint(),
            "scorer_hash": scorer.scorer_hash(), "provenance": provenance, "extra": extra,
            "images_dir": os.path.relpath(images_dir, out), "score_batch_size": args.score_batch_size,
            "samples": [[s.name, s.item_id, s.sha256] for s in sorted(samples, key=lambda s: s.name)],
        }
        manifest_path = out / f"scoring-{scorer.scorer_hash()}.json"
        if not manifest_path.is_file():  # identical content from every rank; written once
            atomic_write_text(manifest_path, dumps(manifest, indent=1, sort_keys=True) + "\n")
        if shard.finalizes:
            store.upsert_run(run_id, self.name, status="scoring")
        with progress("score", -(-len(samples) // shard.count)) as tick:
            try:
                score_samples(samples, scorer, out / "records", batch_size=args.score_batch_size,
                              shard=(shard.index, shard.count), token=shard_token(shard), progress=tick)
            finally:
                _ingest_scores(store, run_id, scorer.scorer_hash(), out / "records")
        shard.barrier()
        if not shard.finalizes:
            return Outcome(out, run_id, {}, partial=True)
        return Outcome(out, run_id, self.finalize(out, store, scorer_hash=scorer.scorer_hash()))

    def finalize(self, out: Path, store: Store, *, scorer_hash: str | None = None) -> dict[str, Any]:
        """Merge every process's score records into ``results.jsonl``, ``summary.json`` and the store.

        Reads only files (the scoring manifest and the record files), so it runs on rank 0 at the end
        of a launch or later as ``harness merge OUT``. Missing units are an :class:`IncompleteRun` error
        that names each of them; nothing is written then.
        """
        from benchmarks.geneval.summary import metric_rows, summarize

        manifest = _scoring_manifest(out, scorer_hash)
        images_dir = Path(os.path.normpath(out / manifest["images_dir"]))
        done = RecordLog(out / "records", f"score-{manifest['scorer_hash']}").read()
        metadata: dict[str, dict[str, Any]] = {}
        records, missing = [], []
        for name, item_id, sha in manifest["samples"]:
            if item_id not in metadata:
                metadata[item_id] = json.loads((images_dir / item_id / "metadata.jsonl").read_text(encoding="utf-8"))
            key = score_key(Sample(images_dir / name, item_id, metadata[item_id], sha), manifest["scorer_hash"])
            if key in done:
                records.append(done[key])
            else:
                missing.append(name)
        if missing:
            raise IncompleteRun(f"{out}: {len(missing)} of {len(manifest['samples'])} images not scored yet "
                                f"({listing(missing)}); rerun the scoring (`harness score geneval --images "
                                f"{images_dir}`, any number of processes) to finish", missing)
        write_results(records, images_dir, out / "results.jsonl")
        summary = {
            "benchmark": self.name, "label": manifest["label"], "run_id": manifest["run_id"],
            "scorer": manifest["scorer"], "scorer_hash": manifest["scorer_hash"],
            **summarize(records), **manifest["extra"], "provenance": manifest["provenance"],
            "harness_version": __version__,
        }
        atomic_write_text(out / "summary.json", dumps(summary, indent=2, sort_keys=True) + "\n")
        run_id = manifest["run_id"]
        store.upsert_run(run_id, self.name, status="scoring")
        store.add_scores(run_id, manifest["scorer_hash"], records)
        store.set_metrics(run_id, manifest["scorer_hash"], self.name, metric_rows(summary))
        store.upsert_run(run_id, self.name, status="finished")
        return summary

    def merge(self, out: Path, store: Store, *, scorer_hash: str | None = None) -> Outcome:
        """``harness merge OUT``: repair cut-short record lines, check completeness, write the results."""
        repaired = [str(p) for p in (out / "records").glob("*.jsonl") if repair_record_file(p)]
        if (out / "run.json").is_file():
            plan = RunPlan.from_manifest(out)
            self._generated_samples(plan)
            store.add_samples(plan.run_id, RecordLog(out / "records", "generate").read().values())
            if scorer_hash is None and not any(out.glob("scoring-*.json")):  # generated with --no-score
                store.upsert_run(plan.run_id, self.name, status="generated")
                return Outcome(out, plan.run_id, {}, repaired=repaired)
        summary = self.finalize(out, store, scorer_hash=scorer_hash)
        outcome = Outcome(out, summary["run_id"], summary)
        outcome.repaired = repaired
        return outcome


#: what each GenEval constant accepts (``--options``)
OPTION_TYPES = {"threshold": FRACTION, "counting_threshold": FRACTION, "max_overlap": FRACTION,
                "position_threshold": NON_NEGATIVE_NUMBER, "max_objects": POSITIVE_INT}


def parse_options(text: str) -> Options:
    """``--options threshold=0.3,max_objects=16`` → :class:`Options` (unknown keys, bad values: an error)."""
    from harness.models.base import parse_model_args

    defaults = {f.name: f.default for f in dataclasses.fields(Options)}
    return Options(**check_options(parse_model_args(text, "--options"), defaults, flag="--options", owner="GenEval",
                                   checks=OPTION_TYPES))


def _scoring_manifest(out: Path, scorer_hash: str | None) -> dict[str, Any]:
    """The scoring manifest of ``out`` (the one named, else the most recent)."""
    paths = sorted(out.glob("scoring-*.json"), key=lambda p: p.stat().st_mtime)
    if scorer_hash:
        paths = [p for p in paths if p.stem == f"scoring-{scorer_hash}"]
    if not paths:
        raise HarnessError(f"{out}: no scoring manifest (scoring-*.json){' for ' + scorer_hash if scorer_hash else ''}"
                           "; score first with `harness score geneval --images ...` or `harness run`")
    manifest = read_json(paths[-1], "score again to rewrite it")
    files = []  # every file finalize reads under images_dir: the listed samples' prompt metadata
    for entry in manifest.get("samples", []):
        name, item_id = (entry[:2] if isinstance(entry, list) and len(entry) == 3 else (None, None))
        if not (isinstance(name, str) and isinstance(item_id, str) and is_prompt_folder(item_id)
                and name.startswith(f"{item_id}/samples/")):
            raise HarnessError(f"{paths[-1]}: sample {entry!r} is not [NNNNN/samples/FILE, NNNNN, sha256]; score again")
        files += [name, f"{item_id}/metadata.jsonl"]
    scoring_images_dir(out, paths[-1], manifest, files)
    return manifest


def _generate_batch(model: Any, batch: list[WorkUnit], items: dict[str, PromptItem],
                    images_dir: Path) -> list[dict[str, Any]]:
    prompts = [items[u.item_id].prompt for u in batch]
    getattr(model, "ensure_loaded", lambda: None)()  # loading is not per-image time
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


def _ingest_scores(store: Store, run_id: str, scorer_hash: str, records_dir: Path) -> None:
    store.add_scores(run_id, scorer_hash, RecordLog(records_dir, f"score-{scorer_hash}").read().values())
