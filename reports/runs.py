"""Load finished runs for reports and comparisons: a run folder (or a run id from the store) → plain data.

Reads only what the stages wrote (``run.json``, ``summary.json``, ``results.jsonl``); never runs a model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.jsonio import load_json, read_text
from harness.errors import HarnessError


@dataclass
class RunData:
    """One scored run: its folder, summary and per-image (or per-case) results."""

    out: Path
    summary: dict[str, Any]
    results: list[dict[str, Any]] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def benchmark(self) -> str:
        return self.summary.get("benchmark", "?")

    @property
    def run_id(self) -> str:
        return self.summary.get("run_id", self.out.name)

    @property
    def model_name(self) -> str:
        model = self.summary.get("model") or {}
        return str(model.get("adapter", "external"))

    def identity(self) -> dict[str, Any]:
        """What must match for two runs to be compared: benchmark, prompt set, scorer."""
        prompts = self.summary.get("prompt_set") or {}
        return {"benchmark": self.benchmark, "prompts": prompts.get("sha256"), "label": self.summary.get("label"),
                "scorer": self.summary.get("scorer_hash")}


def is_device_sweep(path: Path) -> bool:
    """A `harness device sweep`/`profile` folder: attempt records, no summary.json."""
    return not (path / "summary.json").is_file() and any((path / "records").glob("attempts-*.jsonl"))


def resolve_run(ref: str, store_path: str | None = None) -> Path:
    """A run folder, or a run id looked up in the store."""
    path = Path(ref)
    if (path / "summary.json").is_file() or is_device_sweep(path):
        return path
    from harness.store import Store

    store_file = Path(store_path) if store_path else None
    with Store(store_file) as store:
        runs = store.runs()
    match = runs[runs["run_id"] == ref]
    if len(match) and match.iloc[0]["out_dir"]:
        found = Path(match.iloc[0]["out_dir"])
        if (found / "summary.json").is_file() or is_device_sweep(found):
            return found
    raise HarnessError(f"{ref}: not a scored run folder (no summary.json) nor a finished run id in the store; "
                       "pass the folder `harness run` printed")


def load_run(ref: str, store_path: str | None = None) -> RunData:
    """Read a run's summary, results and manifest; unreadable files name themselves."""
    out = resolve_run(ref, store_path)
    if is_device_sweep(out):
        return load_device_sweep(out)
    fix = f"it is written by `harness run`/`score`; rerun `harness merge {out}`"
    summary = load_json(out / "summary.json", fix)
    results = []
    results_path = out / "results.jsonl"
    if results_path.is_file():
        for n, line in enumerate(read_text(results_path, fix).splitlines(), 1):
            if line.strip():
                try:
                    results.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise HarnessError(f"{results_path} line {n}: not valid JSON; rerun `harness merge {out}`") from exc
                if not isinstance(results[-1], dict):
                    raise HarnessError(f"{results_path} line {n}: not a JSON object; rerun `harness merge {out}`")
    manifest = load_json(out / "run.json", fix) if (out / "run.json").is_file() else {}
    return RunData(out, summary, results, manifest)


def geneval_verdicts(run: RunData) -> tuple[dict[str, dict[str, bool]], dict[str, str], dict[str, str]]:
    """``(verdicts[prompt][sample] = correct, tag[prompt], prompt_text[prompt])`` from results.jsonl.

    The prompt key is the prompt folder (``00042``) and the sample key the file name, so that two runs
    on the same prompts and seeds pair up image by image.
    """
    verdicts: dict[str, dict[str, bool]] = {}
    tags: dict[str, str] = {}
    texts: dict[str, str] = {}
    for r in run.results:
        parts = Path(r["filename"]).parts
        prompt, sample = parts[-3], parts[-1]
        verdicts.setdefault(prompt, {})[sample] = bool(r["correct"])
        tags[prompt] = r["tag"]
        texts[prompt] = r["prompt"]
    return verdicts, tags, texts


def load_device_sweep(out: Path) -> RunData:
    """A device sweep: its attempt records as results, a small summary naming the variants."""
    from harness.units import RecordLog

    records = sorted(RecordLog(out / "records", "attempts").read().values(),
                     key=lambda r: (r.get("order_idx", 0), r.get("attempt", 0)))
    variants = sorted({str(r.get("variant")) for r in records})
    manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").is_file() else {}
    summary = {"benchmark": "device", "run_id": records[0].get("run_id", out.name) if records else out.name,
               "label": "device latency", "model": {"adapter": ",".join(variants)},
               "device": manifest.get("device"), "attempts": len(records),
               "ok": sum(r.get("status") == "ok" for r in records)}
    return RunData(out, summary, records, manifest)


CONFIG_KEYS = ("variant", "runtime", "backend", "precision", "steps", "height", "width")


def latency_samples(run: RunData) -> dict[str, list[float]]:
    """End-to-end ms of every measured iteration of every ok attempt, per configuration label."""
    samples: dict[str, list[float]] = {}
    for r in run.results:
        if r.get("status") != "ok":
            continue
        label = "|".join(str(r.get(k)) for k in CONFIG_KEYS)
        samples.setdefault(label, []).extend(float(x) for x in (r.get("e2e_ms") or []))
    return samples


def imgedit_case_scores(run: RunData) -> tuple[dict[str, float], dict[str, str]]:
    """``(mean judge score per scored case, edit type per case)`` from an ImgEdit results.jsonl."""
    scores: dict[str, float] = {}
    types: dict[str, str] = {}
    for r in run.results:
        types[r["case"]] = r["edit_type"]
        if r.get("status") == "scored" and r.get("scores"):
            scores[r["case"]] = sum(r["scores"]) / len(r["scores"])
    return scores, types
