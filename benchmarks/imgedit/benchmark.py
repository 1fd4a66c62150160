"""The ImgEdit benchmark: cases → edit work units → ``<key>.png`` (official layout) → judge → summary → store.

``run`` edits with any registered model that can ``edit`` and then judges; ``score`` judges an existing
folder of ``<key>.png`` files (ours or anyone's, e.g. made for the official scripts). Both stages resume:
generation like GenEval (planned batches, per-process record files), judging per batch with every
answer also kept in the judge's SQLite cache the moment it arrives. A case the judge could not answer
(``judge_failed``) is retried by the next run of the same command; every case ends ``scored``,
``parse_failed`` or ``judge_failed`` and the summary counts each.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.imgedit.data import Case, CaseSet, check_sources, load_case_set, parse_cases, rubric_sha
from harness import __version__
from harness.core.paths import inside, safe_name
from harness.core.options import NON_NEGATIVE_INT, POSITIVE_INT, POSITIVE_NUMBER
from harness.datafiles import sha256_file
from harness.distributed import Shard
from harness.errors import HarnessError
from harness.runner import run_stage
from harness.stages import (
    SINGLE,
    IncompleteRun,
    Outcome,
    Progress,
    checked_case_keys,
    is_lock_file,
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
from harness.units import RecordLog, WorkUnit, atomic_write_bytes, atomic_write_text, chunks, content_hash

__all__ = ["ImgEdit", "IncompleteRun", "Outcome"]


@dataclass(frozen=True)
class ScoreUnit:
    """One case to judge: its edited image, the source image, and the judge request key."""

    case: Case
    image: Path
    source: Path
    image_sha: str
    source_sha: str
    key: str


class ImgEdit:
    """ImgEdit Basic (imgedit.md): 737 cases, 9 edit types, judge sub-scores 1-5, overall = mean of types."""

    name = "imgedit"
    capability = "edit"

    # -- CLI ------------------------------------------------------------------------------------------
    @staticmethod
    def add_scoring_arguments(p: argparse.ArgumentParser) -> None:
        from benchmarks.geneval.colors import clip_spec_arg  # the CLIP loader ClipMetrics uses
        from benchmarks.imgedit.judge import DEFAULT_MODEL

        d = p.add_argument_group("imgedit data")
        d.add_argument("--cases", default="official",
                       help="'official' (Basic suite, 737 cases, downloaded and sha256-checked), 'demo' (18 built-in "
                            "cases with drawn images), or a case JSON in the basic_edit.json schema")
        d.add_argument("--case-version", default="2025-06-16", choices=["2025-06-16", "pre-2025-06-16"],
                       help="which basic_edit.json: current, or the one before the alter->adjust rename")
        d.add_argument("--data-dir", default=None,
                       help="offline folder with basic_edit.json / prompts.json (sha256-checked) and the images "
                            "(Benchmark/singleturn or singleturn, or Benchmark.tar)")
        d.add_argument("--source-root", default=None, help="folder of the source images (Benchmark/singleturn)")
        d.add_argument("--rubrics", default=None, help="custom rubric JSON (default: the official prompts.json)")
        d.add_argument("--types", default=None, help="comma-separated edit types (default: all)")
        d.add_argument("--limit", type=POSITIVE_INT.argtype(), default=None, help="at most N cases per edit type")
        g = p.add_argument_group("judge")
        g.add_argument("--judge", default="openai", help="judge backend (`harness list judges`)")
        g.add_argument("--judge-model", default=DEFAULT_MODEL,
                       help=f"model name sent to the endpoint (default {DEFAULT_MODEL}; the official script says "
                            "gpt-4o, the leaderboard GPT-4.1)")
        g.add_argument("--judge-base-url", default=None,
                       help="OpenAI-compatible base URL ending in /v1 (default $OPENAI_BASE_URL or api.openai.com)")
        g.add_argument("--judge-api-key-env", default="OPENAI_API_KEY",
                       help="environment variable holding the API key (never written anywhere)")
        g.add_argument("--judge-concurrency", type=POSITIVE_INT.argtype(), default=32,
                       help="requests in flight at most")
        g.add_argument("--judge-retries", type=NON_NEGATIVE_INT.argtype(), default=6,
                       help="retries on 429/5xx/timeouts per case")
        g.add_argument("--judge-timeout", type=POSITIVE_NUMBER.argtype(), default=120.0, help="seconds per request")
        g.add_argument("--temperature", type=_float_or_none, default=0.0,
                       help="judge temperature ('none' = not sent, as the official script)")
        g.add_argument("--judge-seed", type=_int_or_none, default=42, help="judge seed ('none' = not sent)")
        g.add_argument("--judge-max-tokens", type=_int_or_none, default=None, help="max_tokens (default: not sent)")
        g.add_argument("--judge-price", default=None, help="USD per 1M tokens IN,OUT for the cost estimate")
        g.add_argument("--judge-cache", default=None, help="SQLite judge cache (default $HARNESS_CACHE/imgedit/...)")
        g.add_argument("--judge-batch-size", type=POSITIVE_INT.argtype(), default=256,
                       help="cases per durable record batch")
        g.add_argument("--parity", action="store_true",
                       help="headline numbers from the official parser and aggregation (dropping + 2-decimal "
                            "rounding); both are always computed and stored")
        g.add_argument("--size-check", choices=["error", "allow"], default="error",
                       help="an edited image whose size differs from its source: error (default) or judge anyway")
        g.add_argument("--missing", choices=["error", "count"], default="error",
                       help="cases without an edited image: error (default) or count them as judge_failed")
        g.add_argument("--clip-metrics", default=None, type=clip_spec_arg,
                       help="also compute offline CLIP metrics (source/edit similarity, instruction alignment, edit "
                            "direction) with open_clip ARCH:PRETRAINED, e.g. ViT-L-14:openai ('tiny' = random)")
        g.add_argument("--device", default="auto", help="device for the CLIP metrics")

    @classmethod
    def add_run_arguments(cls, p: argparse.ArgumentParser) -> None:
        g = p.add_argument_group("imgedit generation")
        g.add_argument("--seed", type=int, default=42, help="seed of every edit (UniWorld's imgedit.yaml: 42)")
        g.add_argument("--batch-size", type=POSITIVE_INT.argtype(), default=1,
                       help="edits per model call; part of the run's identity")
        g.add_argument("--keep-model-size", action="store_true",
                       help="save edits at the model's output size (default: resized to the source image's size)")
        g.add_argument("--no-score", action="store_true", help="edit only; judge later with `harness score`")
        cls.add_scoring_arguments(p)

    @staticmethod
    def format_summary(summary: dict[str, Any]) -> str:
        from benchmarks.imgedit.aggregate import format_table

        return format_table(summary)

    # -- helpers --------------------------------------------------------------------------------------
    def build_judge(self, args: argparse.Namespace) -> Any:
        """The judge named by ``--judge`` with this command's options; checks the key before any work."""
        from harness.registry import registry

        cls = registry("judges").load(args.judge)
        judge = cls(model=args.judge_model, base_url=args.judge_base_url, api_key_env=args.judge_api_key_env,
                    concurrency=args.judge_concurrency, max_retries=args.judge_retries, timeout=args.judge_timeout,
                    temperature=args.temperature, seed=args.judge_seed, max_tokens=args.judge_max_tokens,
                    price=_price(args.judge_price), cache=args.judge_cache)
        judge.check_ready()
        return judge

    @staticmethod
    def case_set(args: argparse.Namespace) -> CaseSet:
        return load_case_set(args.cases, version=args.case_version, data_dir=args.data_dir,
                             source_root=args.source_root, rubrics=args.rubrics)

    @staticmethod
    def _types(args: argparse.Namespace) -> list[str] | None:
        return [t.strip() for t in args.types.split(",") if t.strip()] if args.types else None

    # -- run ------------------------------------------------------------------------------------------
    def run(self, args: argparse.Namespace, model: Any, *, store: Store, provenance: dict[str, Any],
            progress: Progress = no_progress, shard: Shard = SINGLE) -> Outcome:
        """Edit this shard's cases (resumable), then judge them (resumable); rank 0 writes the results."""
        if "edit" not in model.capabilities:
            raise HarnessError(f"model {model.name!r} cannot edit images; ImgEdit needs an editing model "
                               "(`harness list models`: tiny, dreamlite-*, diffusers-edit, ip2p, kontext, "
                               "qwen-image-edit, gpt-image-1)")
        if args.batch_size < 1:
            raise HarnessError("--batch-size must be >= 1")
        judge = None if args.no_score or shard.jobs > 1 else self.build_judge(args)
        case_set = self.case_set(args)
        cases = case_set.select(self._types(args), args.limit)
        shas = check_sources(case_set, cases)
        config = {
            "benchmark": self.name, "cases": case_set.provenance["cases"] | {"keys": [c.key for c in cases]},
            "rubrics": case_set.provenance["rubrics"], "label": case_set.label,
            "seed": args.seed, "batch_size": args.batch_size, "resize_to_source": not args.keep_model_size,
            "model": model.fingerprint(), "model_hash": model.model_hash(),
        }
        run_id = f"imgedit-{content_hash(config, 12)}"
        out = Path(args.out) if args.out else Path("runs") / "imgedit" / f"{model.name}-{run_id[8:16]}"
        with own_run_folder(out, shard, stage="run"):
            open_manifest(out, run_id, config, provenance | {"sources": case_set.provenance["sources"]})
            if not (out / "cases.json").is_file():  # the selected cases in the official schema, and the rubrics
                atomic_write_text(out / "cases.json", json.dumps({c.key: c.record() for c in cases}, indent=1) + "\n")
                atomic_write_text(out / "rubrics.json",
                                  json.dumps(case_set.rubrics, indent=1, ensure_ascii=False) + "\n")
            if shard.finalizes:
                store.upsert_run(run_id, self.name, status="generating", model=model.name,
                                 model_hash=config["model_hash"], out_dir=str(out), config=config,
                                 provenance=provenance, harness_version=__version__)
            units = [WorkUnit(self.name, c.key, content_hash([c.record(), shas[c.source]]), 0, args.seed,
                              config["model_hash"]) for c in cases]
            by_key = {c.key: c for c in cases}

            def generate(batch: list[WorkUnit]) -> list[dict[str, Any]]:
                return _edit_batch(model, batch, by_key, case_set, out, resize=not args.keep_model_size)

            with RecordLog(out / "records", "generate", token=shard_token(shard)) as log:
                already = len(log.read())
                try:
                    with progress("edit", -(-len(units) // shard.count)) as tick:
                        run_stage(units, key=lambda u: u.key, process=generate, log=log, batch_size=args.batch_size,
                                  shard=(shard.index, shard.count), progress=tick)
                finally:
                    store.add_samples(run_id, log.read().values())
            generated = max(len(units) - already, 0)
            shard.barrier()
            if shard.jobs > 1 or args.no_score:
                if shard.finalizes:
                    store.upsert_run(run_id, self.name, status="generated")
                return Outcome(out, run_id, {}, generated, partial=shard.jobs > 1)
            _check_generated(out, units)
            extra = {"model": config["model"], "seed": args.seed, "resize_to_source": not args.keep_model_size}
            outcome = self._score(args, judge, case_set, cases, out / "images", out, run_id, store, progress, shard,
                                  extra=extra, provenance=provenance)
            outcome.generated = generated
            return outcome

    # -- score ----------------------------------------------------------------------------------------
    def score(self, args: argparse.Namespace, *, store: Store, provenance: dict[str, Any],
              progress: Progress = no_progress, shard: Shard = SINGLE) -> Outcome:
        """Judge a folder of ``<key>.png`` (a run's ``images/`` or anyone's official-layout folder)."""
        images_dir = Path(args.images)
        if not images_dir.is_dir():
            raise HarnessError(f"--images {images_dir}: no such folder")
        judge = self.build_judge(args)
        run_json = images_dir.parent / "run.json"
        extra: dict[str, Any] = {}
        of_run = images_dir.name == "images" and is_run_folder(images_dir.parent)
        if of_run:
            out = Path(args.out) if args.out else images_dir.parent
            manifest = read_json(run_json, "it is written by `harness run imgedit`; rerun it")
            (source_id, config), scored = (manifest["run_id"], manifest["config"]), images_dir.parent
            case_set = _run_case_set(images_dir.parent, manifest)
            cases = case_set.select(self._types(args), args.limit)
            units = [WorkUnit(self.name, c.key, "", 0, 0, "") for c in cases]
            _check_generated(images_dir.parent, None, keys=[u.item_id for u in units])
            extra = {"model": config["model"], "seed": config["seed"], "resize_to_source": config["resize_to_source"]}
            provenance = {**manifest.get("provenance", {}), **provenance}
        else:
            out = Path(args.out) if args.out else images_dir
            case_set = self.case_set(args)
            cases = case_set.select(self._types(args), args.limit)
            source_id, scored = f"imgedit-score-{content_hash(str(images_dir.resolve()), 12)}", images_dir
            extra = _inventory(images_dir, case_set, cases)
            provenance = provenance | {"sources": case_set.provenance["sources"]}
        run_id = scoring_run_id(source_id, scored, out)
        if run_id != source_id:
            extra["scored_run"] = source_id
        with own_run_folder(out, shard, stage="score"):
            if shard.finalizes:
                open_scoring_row(store, self.name, run_id, source_id, of_run=of_run, out=out, images_dir=images_dir,
                                 model=extra.get("model", {}).get("adapter", "external"), provenance=provenance)
            return self._score(args, judge, case_set, cases, images_dir, out, run_id, store, progress, shard,
                               extra=extra, provenance=provenance)

    def _score(self, args: argparse.Namespace, judge: Any, case_set: CaseSet, cases: list[Case], images_dir: Path,
               out: Path, run_id: str, store: Store, progress: Progress, shard: Shard, *, extra: dict[str, Any],
               provenance: dict[str, Any]) -> Outcome:
        from benchmarks.imgedit.judge import JudgeRequest
        from benchmarks.imgedit.parse import rubric_labels
        from harness.registry import registry

        units, missing = _score_units(judge, case_set, cases, images_dir, size_check=args.size_check)
        if missing and args.missing == "error":
            raise HarnessError(f"{images_dir}: {len(missing)} of {len(cases)} case image(s) missing "
                               f"({listing([f'{k}.png' for k in missing])}); generate them, or pass --missing count "
                               "to count them as judge_failed")
        labels = {t: list(rubric_labels(text)) for t, text in case_set.rubrics.items()}
        bad = sorted(t for t in {c.edit_type for c in cases} if len(labels[t]) != 3)
        if bad:
            raise HarnessError(f"rubric(s) {', '.join(bad)}: need exactly three 'Label: A number from 1 to 5.' lines "
                               "in the response format; fix the rubric file")
        rubric_shas = {t: rubric_sha(case_set.rubrics[t]) for t in sorted({c.edit_type for c in cases})}
        scorer = {**judge.fingerprint(), "rubric_sha256": rubric_shas}
        scorer_hash = content_hash(scorer, 12)
        provenance = {**provenance, "judge": registry("judges").entry(args.judge).provenance()}
        manifest = {
            "benchmark": self.name, "run_id": run_id, "label": case_set.label, "scorer": scorer,
            "scorer_hash": scorer_hash, "provenance": provenance, "extra": extra, "labels": labels,
            "mode": "parity" if args.parity else "strict", "price": _price(args.judge_price),
            "images_dir": os.path.relpath(images_dir, out),
            "cases": [[c.key, c.edit_type, c.original_type] for c in cases],
            "units": {u.case.key: u.key for u in units}, "missing": missing,
        }
        clip = None
        if args.clip_metrics:
            from benchmarks.imgedit.clip_metrics import ClipMetrics

            clip = ClipMetrics(args.clip_metrics, device=args.device)
            manifest["clip"] = {"spec": args.clip_metrics, "hash": clip.scorer_hash()}
        atomic_write_text(out / f"scoring-{scorer_hash}.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        if shard.finalizes:
            store.upsert_run(run_id, self.name, status="scoring")
        by_case = {c.key: c for c in cases}
        with RecordLog(out / "records", f"score-{scorer_hash}", token=shard_token(shard)) as log:
            final = {k for k, r in log.read().items() if r["status"] != "judge_failed"}
            batches = chunks([u for u in units], max(1, args.judge_batch_size))
            mine = [b for i, b in enumerate(batches) if i % shard.count == shard.index]
            total = sum(len(b) for b in mine) + (len(missing) if shard.finalizes else 0)
            try:
                with progress("judge", total) as tick:
                    if shard.finalizes and missing:
                        log.append([_missing_record(by_case[k], scorer_hash) for k in missing])
                        tick(len(missing))
                    for batch in mine:
                        todo = [u for u in batch if u.key not in final]
                        tick(len(batch) - len(todo))
                        if not todo:
                            continue
                        requests = [JudgeRequest(u.key, case_set.rubrics[u.case.edit_type].replace(
                            "<edit_prompt>", u.case.prompt), u.source, u.image) for u in todo]
                        results = judge.judge_many(requests, on_result=lambda r: tick(1))
                        log.append([_record(u, r, labels[u.case.edit_type], images_dir)
                                    for u, r in zip(todo, results, strict=True)])
            finally:
                store.add_scores(run_id, scorer_hash, _store_rows(log.read().values()))
        if clip is not None:
            from benchmarks.imgedit.clip_metrics import run_clip_stage

            with progress("clip", -(-len(units) // shard.count)) as tick:
                run_clip_stage(clip, units, out, token=shard_token(shard), shard=(shard.index, shard.count),
                               progress=tick)
        shard.barrier()
        if not shard.finalizes:
            return Outcome(out, run_id, {}, partial=True)
        return Outcome(out, run_id, self.finalize(out, store, scorer_hash=scorer_hash))

    def finalize(self, out: Path, store: Store, *, scorer_hash: str | None = None) -> dict[str, Any]:
        """Records of every process → ``results.jsonl``, ``result.json`` (official) and ``judge_failures.json``,
        ``summary.json`` (with the judge's requests, retries and failed attempts by cause), the store."""
        from benchmarks.imgedit.aggregate import metric_rows, summarize_parity, summarize_strict
        from benchmarks.imgedit.judge import estimate_cost

        manifest = _scoring_manifest(out, scorer_hash)
        scorer_hash = manifest["scorer_hash"]
        done = RecordLog(out / "records", f"score-{scorer_hash}").read()
        by_case = {r["case"]: r for r in done.values()}
        records, missing = [], []
        for key, _edit_type, _original in manifest["cases"]:
            unit_key = manifest["units"].get(key)
            record = done.get(unit_key) if unit_key else by_case.get(key)
            if record is None:
                missing.append(key)
            else:
                records.append(record)
        if missing:
            raise IncompleteRun(f"{out}: {len(missing)} of {len(manifest['cases'])} cases not judged yet "
                                f"({listing(missing)}); rerun the same command (or `harness score imgedit --images "
                                "...`) to finish", missing)
        strict = summarize_strict(records, manifest["labels"])
        parity = summarize_parity(records)
        fresh = [r for r in records if not r.get("cached")]
        prompt_tokens = sum(r.get("prompt_tokens", 0) for r in fresh)
        completion_tokens = sum(r.get("completion_tokens", 0) for r in fresh)
        returned = sorted({r["judge_model"] for r in records if r.get("judge_model")})
        requested = manifest["scorer"]["model"]
        price = tuple(manifest["price"]) if manifest.get("price") else None
        causes: dict[str, int] = {}
        for r in fresh:
            for cause, n in (r.get("attempt_causes") or {}).items():
                causes[cause] = causes.get(cause, 0) + n
        judge = {
            "requested_model": requested, "returned_models": returned, "parameters": manifest["scorer"],
            "endpoints": sorted({r["endpoint"] for r in records if r.get("endpoint")}),
            "requests": sum(r.get("attempts", 0) for r in fresh), "retries": sum(max(r.get("attempts", 0) - 1, 0)
                                                                                for r in fresh),
            "failed_attempts": dict(sorted(causes.items())),
            "cache_hits": len(records) - len(fresh), "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "cost_usd": estimate_cost(returned[0] if returned else requested, prompt_tokens, completion_tokens, price),
            "cost_note": "estimated from list prices (USD per 1M tokens) for the answers paid for in this scoring; "
                         "cached answers cost nothing",
        }
        failures = [{"case": r["case"], "edit_type": r["edit_type"], "status": r["status"], "reason": r["reason"]}
                    for r in records if r["status"] != "scored"]
        summary = {
            "benchmark": self.name, "label": manifest["label"], "run_id": manifest["run_id"],
            "mode": manifest["mode"], "scorer_hash": scorer_hash, "strict": strict, "parity": parity,
            "overall": (parity if manifest["mode"] == "parity" else strict)["overall"],
            "judge": judge, "failures": failures, **manifest["extra"], "provenance": manifest["provenance"],
            "harness_version": __version__,
        }
        if manifest.get("clip"):
            from benchmarks.imgedit.clip_metrics import summarize_clip

            clip_done = RecordLog(out / "records", f"clip-{manifest['clip']['hash']}").read()
            wanted = [k for k in manifest["units"].values() if k not in clip_done]
            if wanted:
                raise IncompleteRun(f"{out}: CLIP metrics missing for {len(wanted)} case(s); rerun the scoring", wanted)
            summary["clip"] = summarize_clip([clip_done[k] for k in manifest["units"].values()],
                                             manifest["clip"]["spec"])
        images_dir = Path(os.path.normpath(out / manifest["images_dir"]))
        _write_results(records, images_dir, out)
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
        run_id = manifest["run_id"]
        store.upsert_run(run_id, self.name, status="scoring")
        store.add_scores(run_id, scorer_hash, _store_rows(records))
        store.set_metrics(run_id, scorer_hash, self.name, metric_rows(summary))
        store.upsert_run(run_id, self.name, status="finished")
        return summary

    def merge(self, out: Path, store: Store, *, scorer_hash: str | None = None) -> Outcome:
        """``harness merge OUT``: repair cut-short record lines, check completeness, write the results."""
        from harness.units import repair_record_file

        repaired = [str(p) for p in (out / "records").glob("*.jsonl") if repair_record_file(p)]
        if (out / "run.json").is_file():
            manifest = json.loads((out / "run.json").read_text())
            _check_generated(out, None, keys=manifest["config"]["cases"]["keys"])
            store.add_samples(manifest["run_id"], RecordLog(out / "records", "generate").read().values())
            if scorer_hash is None and not any(out.glob("scoring-*.json")):  # edited with --no-score
                store.upsert_run(manifest["run_id"], self.name, status="generated")
                return Outcome(out, manifest["run_id"], {}, repaired=repaired)
        summary = self.finalize(out, store, scorer_hash=scorer_hash)
        outcome = Outcome(out, summary["run_id"], summary)
        outcome.repaired = repaired
        return outcome


# -- generation -----------------------------------------------------------------------------------------
def _edit_batch(model: Any, batch: list[WorkUnit], cases: dict[str, Case], case_set: CaseSet, out: Path, *,
                resize: bool) -> list[dict[str, Any]]:
    from PIL import Image

    sources = []
    for unit in batch:
        with Image.open(case_set.source_path(cases[unit.item_id])) as im:
            sources.append(im.convert("RGB"))
    getattr(model, "ensure_loaded", lambda: None)()  # loading is not per-image time
    start = time.perf_counter()
    images = model.edit(sources, [cases[u.item_id].prompt for u in batch], [u.seed for u in batch])
    seconds = (time.perf_counter() - start) / len(batch)
    if len(images) != len(batch):
        raise HarnessError(f"model {model.name!r} returned {len(images)} images for {len(batch)} edits")
    records = []
    for unit, source, image in zip(batch, sources, images, strict=True):
        model_size = list(image.size)
        if resize and image.size != source.size:
            image = image.convert("RGB").resize(source.size, Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        data = buf.getvalue()
        rel = f"images/{safe_name(unit.item_id, what='case key', where=str(out / 'cases.json'))}.png"
        atomic_write_bytes(inside(out, rel, what="edited image"), data, fsync=False)  # the record log is fsynced after
        records.append({"key": unit.key, "item_id": unit.item_id, "sample_index": 0, "seed": unit.seed, "image": rel,
                        "sha256": _sha256(data), "seconds": seconds, "model_size": model_size,
                        "source_size": list(source.size)})
    return records


def _check_generated(out: Path, units: list[WorkUnit] | None, keys: list[str] | None = None) -> None:
    """Every planned edit recorded and on disk, or an :class:`IncompleteRun` naming the missing ones."""
    done = RecordLog(out / "records", "generate").read()
    on_disk = {k for k, r in done.items() if recorded_image(out, r, str(out / "records")).is_file()}
    recorded = {done[k]["item_id"] for k in on_disk}
    if units is not None:
        have = on_disk
        names = [f"{u.item_id}.png" for u in units if u.key not in have]
    else:
        names = [f"{k}.png" for k in keys or [] if k not in recorded]
    if names:
        raise IncompleteRun(f"{out}: {len(names)} edit(s) not generated yet ({listing(names)}); rerun the same "
                            "`harness run imgedit` (or the missing --shard jobs) to generate them", names)


def _run_case_set(run: Path, manifest: dict[str, Any]) -> CaseSet:
    """The case set a run was made with, from its ``cases.json``/``rubrics.json`` and recorded source root."""
    from benchmarks.imgedit.data import load_json, parse_rubrics

    rubrics = parse_rubrics(load_json(run / "rubrics.json", "rubrics.json"), run / "rubrics.json")
    renamed = {"alter": "adjust"} if manifest["config"]["cases"].get("version") == "pre-2025-06-16" else {}
    cases = parse_cases(load_json(run / "cases.json", "cases.json"), run / "cases.json", rubrics, renamed)
    sources = manifest.get("provenance", {}).get("sources", {})
    root = Path(sources.get("root", ""))
    if not root.is_dir():
        raise HarnessError(f"{run}/run.json: source image folder {root} is gone; restore it (or rerun `harness run`)")
    return CaseSet(manifest["config"]["cases"]["name"], manifest["config"]["label"], cases, rubrics, root,
                   {"cases": manifest["config"]["cases"], "rubrics": manifest["config"]["rubrics"],
                    "sources": sources})


def _inventory(images_dir: Path, case_set: CaseSet, cases: list[Case]) -> dict[str, Any]:
    """What else is in a scored folder: PNGs of other cases (error if not in the case file), other files."""
    known = {c.key for c in case_set.cases}
    selected = {c.key for c in cases}
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


def _score_units(judge: Any, case_set: CaseSet, cases: list[Case], images_dir: Path, *,
                 size_check: str) -> tuple[list[ScoreUnit], list[str]]:
    from PIL import Image

    from harness.core.images import check_pixels

    shas = check_sources(case_set, cases)
    units, missing, wrong = [], [], []
    for case in cases:
        image = inside(images_dir, f"{case.key}.png", what="edited image")
        if not image.is_file():
            missing.append(case.key)
            continue
        source = case_set.source_path(case)
        check_pixels(image, "edited image")
        check_pixels(source, "source image")
        try:
            with Image.open(image) as im, Image.open(source) as src:
                if im.size != src.size:
                    wrong.append(f"{image.name} {im.size[0]}x{im.size[1]} vs source {src.size[0]}x{src.size[1]}")
        except OSError as exc:
            raise HarnessError(f"{image}: not a readable image ({exc}); regenerate it") from exc
        image_sha = sha256_file(image)
        key = judge.cache_key(rubric_sha=rubric_sha(case_set.rubrics[case.edit_type]), case=case.key,
                              instruction=case.prompt, source_sha=shas[case.source], edited_sha=image_sha)
        units.append(ScoreUnit(case, image, source, image_sha, shas[case.source], key))
    if wrong and size_check == "error":
        raise HarnessError(f"{images_dir}: {len(wrong)} edited image(s) differ in size from their source "
                           f"({listing(wrong, 3)}); resize them to the source size, or pass --size-check allow to "
                           "judge them as they are (the official script does)")
    return units, missing


def _record(unit: ScoreUnit, result: Any, labels: list[str], images_dir: Path) -> dict[str, Any]:
    from benchmarks.imgedit.parse import parse_strict

    base = {"key": unit.key, "case": unit.case.key, "edit_type": unit.case.edit_type, "image": unit.image.name,
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


def _missing_record(case: Case, scorer_hash: str) -> dict[str, Any]:
    return {"key": content_hash(["missing", case.key, scorer_hash], 32), "case": case.key, "edit_type": case.edit_type,
            "image": f"{case.key}.png", "status": "judge_failed", "reason": "missing image", "scores": None,
            "answer": None, "cached": False, "attempts": 0}


def _store_rows(records: Any) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        mean = sum(r["scores"]) / len(r["scores"]) if r.get("scores") else None
        rows.append({"key": r["key"], "image": r["image"], "item_id": r["case"], "tag": r["edit_type"],
                     "correct": None, "reason": r["status"] + (f": {r['reason']}" if r.get("reason") else ""),
                     "details": {"scores": r.get("scores"), "mean": mean, "judge_model": r.get("judge_model"),
                                 "answer": r.get("answer")}})
    return rows


def _write_results(records: list[dict[str, Any]], images_dir: Path, out: Path) -> None:
    """``results.jsonl`` (one line per case, case order), the official ``result.json`` (key → answer text, the
    cases the judge answered only: what ``step1_get_avgscore.py`` reads) and ``judge_failures.json`` (key →
    reason, the cases it did not answer)."""
    lines = [json.dumps({k: r.get(k) for k in ("case", "edit_type", "image", "status", "reason", "scores", "answer",
                                               "judge_model", "cached", "attempts", "attempt_causes",
                                               "image_sha256")},
                        ensure_ascii=False) for r in records]
    atomic_write_text(out / "results.jsonl", "\n".join(lines) + "\n")
    official = {r["case"]: r["answer"] for r in records if r.get("answer") is not None}
    failures = {r["case"]: r.get("reason") or r["status"] for r in records if r.get("answer") is None}
    atomic_write_text(out / "result.json", json.dumps(official, indent=1, ensure_ascii=False) + "\n")
    atomic_write_text(out / "judge_failures.json", json.dumps(failures, indent=1, ensure_ascii=False) + "\n")


def _scoring_manifest(out: Path, scorer_hash: str | None) -> dict[str, Any]:
    paths = sorted(out.glob("scoring-*.json"), key=lambda p: p.stat().st_mtime)
    if scorer_hash:
        paths = [p for p in paths if p.stem == f"scoring-{scorer_hash}"]
    if not paths:
        raise HarnessError(f"{out}: no scoring manifest (scoring-*.json){' for ' + scorer_hash if scorer_hash else ''}"
                           "; judge first with `harness score imgedit --images ...` or `harness run imgedit`")
    manifest = read_json(paths[-1], "judge again to rewrite it")
    try:
        keys = checked_case_keys([case[0] for case in manifest["cases"]], str(paths[-1]))
        judged = set(manifest["units"])
    except (KeyError, TypeError, IndexError) as exc:
        raise HarnessError(f"{paths[-1]}: cases/units missing or malformed; judge again to rewrite it") from exc
    scoring_images_dir(out, paths[-1], manifest, [f"{key}.png" for key in keys if key in judged])
    return manifest


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _float_or_none(text: str) -> float | None:
    return None if text.lower() in ("none", "null") else float(text)


def _int_or_none(text: str) -> int | None:
    return None if text.lower() in ("none", "null") else int(text)


def _price(text: str | None) -> tuple[float, float] | None:
    if not text:
        return None
    try:
        a, b = (float(x) for x in text.split(","))
    except ValueError:
        raise HarnessError(f"--judge-price {text!r}: use IN,OUT in USD per 1M tokens, e.g. 2,8") from None
    return a, b
