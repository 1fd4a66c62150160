"""The run lifecycle, the same for every benchmark: :func:`evaluate`, :func:`score` and :func:`merge`.

``evaluate`` plans a benchmark's work units for a model, claims the run folder (ownership and lock), writes
the manifest, generates every unit not recorded yet (resumable, rank- and shard-aware), then scores the
images through the benchmark's scoring stages and writes the results, the summary and the store rows.
``score`` does the second half for a folder of images (a run of ours, or anyone's folder in the official
layout); ``merge`` finishes a run whose units were recorded by independent ``--shard`` jobs.

Every component the run needs is resolved before the first unit (model weights, scorer weights, a judge
endpoint and its model name), so a missing piece fails in seconds with one line.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.api.benchmark import Benchmark, Generated, Plan, Sample, ScorePlan, Stage, WorkUnit
from harness.api.model import FailedImage, ImageModel
from harness.api.scorer import Scorer
from harness.core.errors import HarnessError, IncompleteRun
from harness.core.fsio import RecordLog, atomic_write_bytes, atomic_write_text, listing, repair_record_file
from harness.core.hashing import content_hash, sha256_bytes
from harness.core.jsonio import dumps, load_json
from harness.core.version import __version__
from harness.engine.distributed import SINGLE, Shard, current_shard
from harness.engine.runfolder import (
    is_run_folder,
    open_manifest,
    open_scoring_row,
    own_run_folder,
    recorded_image,
    scoring_images_dir,
    scoring_run_id,
    shard_token,
)
from harness.engine.stages import run_stage
from harness.registry import provenance_of, registry
from harness.store import Store

Progress = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]

#: a run's statuses in the store, in the order a run passes them
GENERATING, GENERATED, SCORING, FINISHED = "generating", "generated", "scoring", "finished"


@contextmanager
def no_progress(desc: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress factory that shows nothing (library use and tests)."""
    yield lambda n: None


@dataclass
class Outcome:
    """What a run, score or merge produced: where, its run id, and the summary (empty for a shard)."""

    out: Path
    run_id: str
    summary: dict[str, Any]
    generated: int = 0
    partial: bool = False
    repaired: list[str] = field(default_factory=list)


# -- public API --------------------------------------------------------------------------------------------
def evaluate(benchmark: str | Benchmark, model: str | ImageModel, config: Any = None, *,
             model_args: Mapping[str, Any] | None = None, out: str | os.PathLike | None = None,
             store: str | os.PathLike | Store | None = None, shard: Shard | str | None = None,
             progress: Progress | None = None, score: bool = True) -> Outcome:
    """Generate a benchmark's images with a model and score them (resumable); returns the :class:`Outcome`.

    ``benchmark`` and ``model`` are registry names or instances; ``config`` the benchmark's config (its
    dataclass, or a mapping of its fields); ``model_args`` the model's options when ``model`` is a name.
    ``shard`` is ``"I/N"`` for independent jobs (finish with :func:`merge`); launcher ranks are found from the
    environment. ``score=False`` generates only (score later with :func:`score`).
    """
    bench = load_benchmark(benchmark, config)
    model_obj = load_model(model, model_args)
    this = _shard(shard)
    progress = progress or no_progress
    if bench.capability not in model_obj.capabilities:
        raise HarnessError(f"model {model_obj.name!r} cannot {bench.capability} images, which {bench.name} needs "
                           f"(its capabilities: {', '.join(sorted(model_obj.capabilities)) or 'none'}; "
                           "`harness list models`)")
    plan = bench.plan(model_obj)
    run_id = f"{bench.name}-{plan.run_id_hash}"
    folder = Path(out) if out else Path("runs") / bench.name / f"{model_obj.name}-{plan.run_id_hash[:8]}"
    provenance = {"benchmark": provenance_of("benchmarks", bench), "model": provenance_of("models", model_obj)}
    scoring = score and this.jobs == 1
    scorer = bench.build_scorer() if scoring else None
    with _store(store) as st:
        model_obj.resolve()
        if scorer is not None:
            scorer.resolve()
        return _evaluate(bench, model_obj, plan, scorer, folder, run_id, provenance, st, this, progress)


def _evaluate(bench: Benchmark, model_obj: ImageModel, plan: Plan, scorer: Scorer | None, folder: Path, run_id: str,
              provenance: dict[str, Any], st: Store, this: Shard, progress: Progress) -> Outcome:
    with own_run_folder(folder, this, stage="run"):
        open_manifest(folder, run_id, plan.config, provenance | plan.provenance)
        if this.finalizes:
            st.upsert_run(run_id, bench.name, status=GENERATING, model=model_obj.name,
                          model_hash=plan.config.get("model_hash"), out_dir=str(folder), config=plan.config,
                          provenance=provenance, harness_version=__version__)
        bench.prepare(folder, plan)
        generated = _generate(bench, model_obj, plan, folder, st, run_id, this, progress)
        this.barrier()
        if scorer is None:
            if this.finalizes:
                st.upsert_run(run_id, bench.name, status=GENERATED)
            return Outcome(folder, run_id, {}, generated, partial=this.jobs > 1)
        samples = generated_samples(bench, plan, folder)
        outcome = _score(bench, scorer, plan.items, samples, folder, folder / "images", run_id, st, this,
                         progress, extra=bench.run_extra(plan), provenance=provenance)
    outcome.generated = generated
    return outcome


def score(benchmark: str | Benchmark, images: str | os.PathLike, config: Any = None, *,
          out: str | os.PathLike | None = None, store: str | os.PathLike | Store | None = None,
          shard: Shard | str | None = None, progress: Progress | None = None) -> Outcome:
    """Score a folder of images: a run's ``images/`` (its own plan), or anyone's folder in the official layout."""
    bench = load_benchmark(benchmark, config)
    this = _shard(shard)
    progress = progress or no_progress
    images_dir = Path(images)
    if not (images_dir.name == "images" and (images_dir.parent / "run.json").is_file()) and not images_dir.is_dir():
        raise HarnessError(f"--images {images_dir}: no such folder")
    provenance: dict[str, Any] = {"benchmark": provenance_of("benchmarks", bench)}
    of_run = images_dir.name == "images" and (images_dir.parent / "run.json").is_file()
    if of_run:
        scored = images_dir.parent
        manifest = load_json(scored / "run.json", "it is written by `harness run`; rerun it")
        if not is_run_folder(scored):
            raise HarnessError(f"{scored / 'run.json'}: not a run manifest of ours (no run_id/config); it is "
                               "written by `harness run`; rerun it or score the images/ folder from a copy")
        plan = bench.plan_from_run(scored, manifest)
        samples = generated_samples(bench, plan, scored)  # every planned image, or an error naming the missing
        items, extra = plan.items, bench.run_extra(plan) | bench.discover_extra(images_dir)
        provenance = {**manifest.get("provenance", {}), **provenance}  # the run's own provenance (model included)
        source_id = manifest["run_id"]
        model_name = (manifest.get("config", {}).get("model") or {}).get("adapter", "external")
    else:
        scored = images_dir
        found = bench.discover(images_dir)
        items, samples, extra = found.items, found.samples, found.extra
        provenance |= found.provenance
        source_id = f"{bench.name}-score-{content_hash(str(images_dir.resolve()), 12)}"
        model_name = "external"
    folder = Path(out) if out else scored
    run_id = scoring_run_id(source_id, scored, folder)
    if run_id != source_id:
        extra["scored_run"] = source_id
    scorer = bench.build_scorer()
    with _store(store) as st, own_run_folder(folder, this, stage="score"):
        scorer.resolve()
        if this.finalizes:
            open_scoring_row(st, bench.name, run_id, source_id, of_run=of_run, out=folder, images_dir=images_dir,
                             model=model_name, provenance=provenance)
        return _score(bench, scorer, items, samples, folder, images_dir, run_id, st, this, progress,
                      extra=extra, provenance=provenance)


def merge(out: str | os.PathLike, *, store: str | os.PathLike | Store | None = None,
          scorer: str | None = None) -> Outcome:
    """Finish a run recorded by independent ``--shard`` jobs: repair cut-short record lines, check that every
    unit is recorded (else :class:`IncompleteRun` naming each missing one), write results and store rows."""
    folder = Path(out)
    manifests = scoring_manifests(folder, scorer)
    run_json = folder / "run.json"
    if not manifests and not run_json.is_file():
        raise HarnessError(f"{folder}: no run.json or scoring-*.json; pass a folder made by `harness run`/`score`")
    source = load_json(manifests[-1] if manifests else run_json,
                       "it is written by `harness run`/`score`; restore it or rerun that command")
    name = source.get("benchmark") or (source.get("config") or {}).get("benchmark")
    if not isinstance(name, str) or not name:
        raise HarnessError(f"{manifests[-1] if manifests else run_json}: names no benchmark; it is written by "
                           "`harness run`/`score`")
    bench = load_benchmark(name, None)
    with _store(store) as st, own_run_folder(folder, SINGLE, stage="merge"):
        repaired = [str(p) for p in sorted((folder / "records").glob("*.jsonl")) if repair_record_file(p)]
        if run_json.is_file():
            manifest = load_json(run_json, "it is written by `harness run`")
            plan = bench.plan_from_run(folder, manifest)
            generated_samples(bench, plan, folder)
            st.add_samples(manifest["run_id"], RecordLog(folder / "records", "generate").read().values())
            if not manifests:  # generated with --no-score or by sharded jobs: nothing to score yet
                st.upsert_run(manifest["run_id"], bench.name, status=GENERATED)
                return Outcome(folder, manifest["run_id"], {}, repaired=repaired)
        summary = finalize(folder, st, scorer_hash=scorer)
    return Outcome(folder, summary["run_id"], summary, repaired=repaired)


# -- loading components -------------------------------------------------------------------------------------
def load_benchmark(benchmark: str | Benchmark, config: Any = None) -> Benchmark:
    """A benchmark instance from a registry name (config: its dataclass or a mapping) or an instance."""
    if isinstance(benchmark, Benchmark):
        if config is not None:
            raise HarnessError(f"benchmark {benchmark.name!r} is already configured; pass config=None")
        return benchmark
    return benchmark_class(str(benchmark))(config)


def benchmark_class(name: str) -> type[Benchmark]:
    """A runnable benchmark's class from the registry (``device`` is for reports only)."""
    cls = registry("benchmarks").load(name)
    if not issubclass(cls, Benchmark):
        raise HarnessError(f"{name!r} is not a runnable benchmark (reports only; `harness device sweep` measures "
                           "devices); `harness list benchmarks` names the others")
    return cls


def load_model(model: str | ImageModel, model_args: Mapping[str, Any] | None = None) -> ImageModel:
    """A model adapter from a registry name and its options, or an instance."""
    if isinstance(model, ImageModel):
        if model_args:
            raise HarnessError(f"model {model.name!r} is already built; pass its options to its constructor")
        return model
    return registry("models").load(str(model))(**dict(model_args or {}))


@contextmanager
def _store(store: str | os.PathLike | Store | None) -> Iterator[Store]:
    if isinstance(store, Store):
        yield store
        return
    with Store(store) as opened:
        yield opened


def _shard(shard: Shard | str | None) -> Shard:
    return shard if isinstance(shard, Shard) else current_shard(shard)


# -- generation ---------------------------------------------------------------------------------------------
def _generate(bench: Benchmark, model: ImageModel, plan: Plan, out: Path, store: Store, run_id: str, shard: Shard,
              progress: Progress) -> int:
    """Generate this shard's units not recorded yet; returns how many units were recorded by this call.

    A unit the model could not make is recorded ``failed`` (not final: the next run tries it again); when its
    batch runs again, the images of the batch's other units are left as they were recorded.
    """
    with RecordLog(out / "records", "generate", token=shard_token(shard)) as log:
        recorded = {k for k, r in log.read().items() if _made(r)}

        def process(batch: list[WorkUnit]) -> list[dict[str, Any]]:
            model.ensure_loaded()  # loading is not per-image time
            start = time.perf_counter()
            made = bench.generate(model, batch, plan)
            seconds = (time.perf_counter() - start) / len(batch)
            if len(made) != len(batch):
                raise HarnessError(f"model {model.name!r} returned {len(made)} images for {len(batch)} units")
            records = [_save(bench, unit, result, out, seconds, write=unit.key not in recorded)
                       for unit, result in zip(batch, made, strict=True)]
            recorded.update(r["key"] for r in records if _made(r))
            return records

        already = len(recorded)
        try:
            with progress(bench.generate_desc, -(-len(plan.units) // shard.count)) as tick:
                run_stage(plan.units, key=lambda u: u.key, process=process, log=log, batch_size=plan.batch_size,
                          shard=(shard.index, shard.count), progress=tick, is_final=_made)
        finally:
            store.add_samples(run_id, log.read().values())
    return max(len(plan.units) - already, 0)


def _made(record: dict[str, Any]) -> bool:
    """A generation record of an image that was made (not ``failed``)."""
    return record.get("status") != "failed"


def _save(bench: Benchmark, unit: WorkUnit, result: Generated, out: Path, seconds: float, *,
          write: bool = True) -> dict[str, Any]:
    """Write one image atomically (the record log is fsynced after the batch) and return its record."""
    image = result.image
    reported = image.info.pop("harness", None) if isinstance(getattr(image, "info", None), dict) else None
    record = {"key": unit.key, "item_id": unit.item_id, "sample_index": unit.sample_index, "seed": unit.seed,
              "image": bench.image_path(unit), "seconds": seconds, **result.fields}
    if isinstance(image, FailedImage):
        return record | {"status": "failed", "reason": image.reason, "partial": image.partial, "sha256": None}
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    data = buf.getvalue()
    if write:
        atomic_write_bytes(out / record["image"], data, fsync=False)
    record["sha256"] = sha256_bytes(data)
    if isinstance(reported, dict):  # what the model measured itself (e.g. on a phone) wins
        record.update(reported)
    return record


def generated_samples(bench: Benchmark, plan: Plan, out: Path) -> list[Sample]:
    """The run's images from its generation records (a unit recorded ``failed`` is a sample with its failure);
    names exactly the units that are missing."""
    done = RecordLog(out / "records", "generate").read()
    where = str(out / "records")
    missing = [u for u in plan.units if u.key not in done
               or (_made(done[u.key]) and not recorded_image(out, done[u.key], where).is_file())]
    if missing:
        names = [_image_name(bench, u) for u in missing]
        noun = bench.unit_nouns[1]
        raise IncompleteRun(f"{out}: {len(missing)} of {len(plan.units)} {noun} not generated yet ({listing(names)}); "
                            f"rerun the same `harness run {bench.name}` (any number of processes, or the missing "
                            "--shard jobs) to generate them", names)
    samples = []
    for u in plan.units:
        record = done[u.key]
        if _made(record):
            samples.append(Sample(recorded_image(out, record, where), _image_name(bench, u), u.item_id,
                                  record["sha256"]))
        else:
            samples.append(Sample(out / bench.image_path(u), _image_name(bench, u), u.item_id,
                                  f"failed:{u.key}", failure=str(record.get("reason") or "generation failed")))
    return samples


def _image_name(bench: Benchmark, unit: WorkUnit) -> str:
    rel = bench.image_path(unit)
    return rel[len("images/"):] if rel.startswith("images/") else rel


# -- scoring ------------------------------------------------------------------------------------------------
def _score(bench: Benchmark, scorer: Scorer | None, items: Any, samples: list[Sample], out: Path, images_dir: Path,
           run_id: str, store: Store, shard: Shard, progress: Progress, *, extra: dict[str, Any],
           provenance: dict[str, Any]) -> Outcome:
    assert scorer is not None
    scorer.load()
    try:
        plan: ScorePlan = bench.score_plan(scorer, items, samples, images_dir)
    except BaseException:
        scorer.close()
        raise
    scorer_hash = plan.scorer_hash
    manifest = {
        "benchmark": bench.name, "run_id": run_id, "label": plan.label, "scorer": plan.fingerprint,
        "scorer_hash": scorer_hash, "provenance": provenance | plan.provenance, "extra": extra | plan.extra,
        "images_dir": os.path.relpath(images_dir, out), "harness_version": __version__,
        "stages": [[s.log_name, [[_key(s, u), _name(s, u)] for u in s.units]] for s in plan.stages],
        "context": plan.context,
    }
    atomic_write_text(out / f"scoring-{scorer_hash}.json", dumps(manifest, indent=1, sort_keys=True) + "\n")
    if shard.finalizes:
        store.upsert_run(run_id, bench.name, status=SCORING)
    try:
        for stage in plan.stages:
            with RecordLog(out / "records", stage.log_name, token=shard_token(shard)) as log, \
                    progress(stage.desc, -(-len(stage.units) // shard.count)) as tick:
                try:
                    run_stage(stage.units, key=lambda u, s=stage: _key(s, u), process=stage.process, log=log,
                              batch_size=stage.batch_size, shard=(shard.index, shard.count), progress=tick,
                              is_final=stage.is_final, whole_batches=stage.whole_batches,
                              live_progress=stage.live_progress)
                finally:
                    if stage.stored:
                        store.add_scores(run_id, scorer_hash, bench.store_rows(list(log.read().values())))
    finally:
        scorer.close()
    shard.barrier()
    if not shard.finalizes:
        return Outcome(out, run_id, {}, partial=True)
    return Outcome(out, run_id, finalize(out, store, scorer_hash=scorer_hash))


def _key(stage: Stage, unit: Any) -> str:
    return stage.key(unit) if stage.key else unit.key


def _name(stage: Stage, unit: Any) -> str:
    return stage.unit_name(unit) if stage.unit_name else unit.name


def scoring_manifests(out: Path, scorer_hash: str | None = None) -> list[Path]:
    """The folder's scoring manifests, oldest first (only the one named by ``scorer_hash`` if given)."""
    paths = sorted(out.glob("scoring-*.json"), key=lambda p: p.stat().st_mtime)
    if scorer_hash:
        paths = [p for p in paths if p.stem == f"scoring-{scorer_hash}"]
    return paths


def finalize(out: Path, store: Store, *, scorer_hash: str | None = None) -> dict[str, Any]:
    """Merge every process's records into the results files, ``summary.json`` and the store.

    Reads only files (the scoring manifest and the record files), so it runs on rank 0 at the end of a
    launch or later as ``harness merge OUT``. Missing units are an :class:`IncompleteRun` naming each of
    them; nothing is written then.
    """
    paths = scoring_manifests(out, scorer_hash)
    if not paths:
        raise HarnessError(f"{out}: no scoring manifest (scoring-*.json){' for ' + scorer_hash if scorer_hash else ''}"
                           "; score first with `harness score BENCHMARK --images ...` or `harness run`")
    manifest = load_json(paths[-1], "it is written by `harness score`; score again to rewrite it")
    stages = manifest.get("stages")
    if not isinstance(stages, list) or not all(
            isinstance(st, list) and len(st) == 2 and isinstance(st[0], str) and isinstance(st[1], list)
            and all(isinstance(e, list) and len(e) == 2 for e in st[1]) for st in stages):
        raise HarnessError(f"{paths[-1]}: 'stages' missing or malformed; score again to rewrite it")
    bench = load_benchmark(str(manifest.get("benchmark")), None)
    images_dir = scoring_images_dir(out, paths[-1], manifest, [name for _, v in stages for _, name in v])
    records: dict[str, list[dict[str, Any]]] = {}
    missing: list[str] = []
    for log_name, expected in stages:
        done = RecordLog(out / "records", log_name).read()
        records[log_name] = [done[key] for key, _ in expected if key in done]
        missing += [name for key, name in expected if key not in done]
    if missing:
        noun = bench.unit_nouns[1]
        total = sum(len(v) for _, v in stages)
        raise IncompleteRun(f"{out}: {len(missing)} of {total} {noun} not {bench.scored_verb} yet "
                            f"({listing(missing)}); rerun the scoring (`harness score {bench.name} --images "
                            f"{images_dir}`, any number of processes) to finish", missing)
    body = bench.summarize(records, manifest)
    summary = {"benchmark": bench.name, "label": manifest["label"], "run_id": manifest["run_id"],
               "scorer_hash": manifest["scorer_hash"], **body, **manifest["extra"],
               "provenance": manifest["provenance"], "harness_version": __version__}
    bench.write_results(records, out, images_dir, manifest)
    atomic_write_text(out / "summary.json", dumps(summary, indent=2, sort_keys=True) + "\n")
    run_id = manifest["run_id"]
    main = next(iter(records.values()), [])
    store.upsert_run(run_id, bench.name, status=SCORING)
    store.add_scores(run_id, manifest["scorer_hash"], bench.store_rows(main))
    store.set_metrics(run_id, manifest["scorer_hash"], bench.name, bench.metric_rows(summary))
    store.upsert_run(run_id, bench.name, status=FINISHED)
    return summary
