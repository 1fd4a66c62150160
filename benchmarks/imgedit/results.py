"""An ImgEdit scoring's results: the summary (strict and parity scores, the judge's accounting, CLIP metrics),
the official-format files and the store rows.

``result.json`` holds the judge's answers only (what the official ``step1_get_avgscore.py`` reads);
``judge_failures.json`` beside it names the cases the judge did not answer (docs/imgedit.md, 'Output files').
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.benchmarks.imgedit.aggregate import summarize_parity, summarize_strict
from harness.core.fsio import atomic_write_text
from harness.core.jsonio import dumps


def summarize(records: Sequence[Mapping[str, Any]], context: Mapping[str, Any], scorer: Mapping[str, Any],
              clip_records: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The summary body of one scoring: strict and parity scores, the judge block, failures, CLIP means."""
    from harness.scorers.openai_judge import estimate_cost

    strict = summarize_strict(records, context["labels"])
    parity = summarize_parity(records)
    fresh = [r for r in records if not r.get("cached")]
    prompt_tokens = sum(r.get("prompt_tokens", 0) for r in fresh)
    completion_tokens = sum(r.get("completion_tokens", 0) for r in fresh)
    returned = sorted({r["judge_model"] for r in records if r.get("judge_model")})
    requested = scorer["model"]
    price = tuple(context["price"]) if context.get("price") else None
    causes: dict[str, int] = {}
    for r in fresh:
        for cause, n in (r.get("attempt_causes") or {}).items():
            causes[cause] = causes.get(cause, 0) + n
    judge = {
        "requested_model": requested, "returned_models": returned, "parameters": dict(scorer),
        "endpoints": sorted({r["endpoint"] for r in records if r.get("endpoint")}),
        "requests": sum(r.get("attempts", 0) for r in fresh),
        "retries": sum(max(r.get("attempts", 0) - 1, 0) for r in fresh),
        "failed_attempts": dict(sorted(causes.items())),
        "cache_hits": len(records) - len(fresh), "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "cost_usd": estimate_cost(returned[0] if returned else requested, prompt_tokens, completion_tokens, price),
        "cost_note": "estimated from list prices (USD per 1M tokens) for the answers paid for in this scoring; "
                     "cached answers cost nothing",
    }
    failures = [{"case": r["case"], "edit_type": r["edit_type"], "status": r["status"], "reason": r["reason"]}
                for r in records if r["status"] != "scored"]
    summary = {"mode": context["mode"], "strict": strict, "parity": parity,
               "overall": (parity if context["mode"] == "parity" else strict)["overall"],
               "judge": judge, "failures": failures}
    if context.get("clip") and clip_records is not None:
        from harness.benchmarks.imgedit.clip_metrics import summarize_clip

        summary["clip"] = summarize_clip(list(clip_records), context["clip"]["spec"])
    return summary


def write_results(records: Sequence[Mapping[str, Any]], out: Path) -> None:
    """``results.jsonl`` (one line per case, case order), the official ``result.json`` (key → answer text, the
    cases the judge answered only) and ``judge_failures.json`` (key → reason, the cases it did not answer)."""
    lines = [dumps({k: r.get(k) for k in ("case", "edit_type", "image", "status", "reason", "scores", "answer",
                                          "judge_model", "cached", "attempts", "attempt_causes", "image_sha256")},
                   ensure_ascii=False) for r in records]
    atomic_write_text(out / "results.jsonl", "\n".join(lines) + "\n")
    official = {r["case"]: r["answer"] for r in records if r.get("answer") is not None}
    failures = {r["case"]: r.get("reason") or r["status"] for r in records if r.get("answer") is None}
    atomic_write_text(out / "result.json", dumps(official, indent=1, ensure_ascii=False) + "\n")
    atomic_write_text(out / "judge_failures.json", dumps(failures, indent=1, ensure_ascii=False) + "\n")


def store_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows for the store's ``scores`` table: the mean of the three sub-scores, the status and the answer."""
    rows = []
    for r in records:
        mean = sum(r["scores"]) / len(r["scores"]) if r.get("scores") else None
        rows.append({"key": r["key"], "image": r["image"], "item_id": r["case"], "tag": r["edit_type"],
                     "correct": None, "reason": r["status"] + (f": {r['reason']}" if r.get("reason") else ""),
                     "details": {"scores": r.get("scores"), "mean": mean, "judge_model": r.get("judge_model"),
                                 "answer": r.get("answer")}})
    return rows
