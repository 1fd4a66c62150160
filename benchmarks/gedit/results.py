"""A GEdit scoring's results: the summary, ``results.jsonl``, the official per-group CSVs, and the store rows.

The CSVs are what ``test_gedit_score.py`` writes (docs/gedit.md, "Output files"):
``OUT/<backbone>/eval_results_new/<method>_<group>_gpt_score.csv`` and ``<method>_combined_gpt_score.csv``
with ``<method>`` = the name of OUT, so the unmodified ``calculate_statistics.py --save_path OUT/.. --model_name
<name of OUT> --backbone <backbone> --language en`` prints exactly our parity numbers. They hold the rows with a
parsed answer; a case whose score the official code would have guessed is not written (its values are unknown).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.benchmarks.gedit.aggregate import (
    headline_language,
    official_rows,
    summarize_parity,
    summarize_strict,
)
from harness.benchmarks.gedit.data import ordered_groups
from harness.core.fsio import atomic_write_text
from harness.core.jsonio import dumps

CSV_COLUMNS = ("source_image", "edited_image", "instruction", "sementics_score", "quality_score",
               "intersection_exist", "instruction_language")
RESULT_FIELDS = ("case", "task_type", "language", "row_key", "intersection", "instruction", "image", "source",
                 "status", "reason", "SC", "PQ", "O", "parity", "answers", "judge_model", "cached_answers", "requests",
                 "attempt_causes", "image_sha256", "source_sha256", "edited_size", "source_size")


def judge_block(records: Sequence[Mapping[str, Any]], scorer: Mapping[str, Any],
                price: tuple[float, float] | None) -> dict[str, Any]:
    """The judge's accounting of this scoring: requests sent (with retries), answers from the cache, failed
    requests by cause, tokens and the estimated cost of the answers paid for now."""
    from harness.scorers.openai_judge import estimate_cost

    causes: dict[str, int] = {}
    for r in records:
        for cause, n in (r.get("attempt_causes") or {}).items():
            causes[cause] = causes.get(cause, 0) + n
    returned = sorted({r["judge_model"] for r in records if r.get("judge_model")})
    tokens = {k: sum(r.get(k, 0) for r in records) for k in ("prompt_tokens", "completion_tokens")}
    return {"requested_model": scorer["model"], "returned_models": returned, "parameters": dict(scorer),
            "endpoints": sorted({r["endpoint"] for r in records if r.get("endpoint")}),
            "requests": sum(r.get("requests", 0) for r in records),
            "retries": sum(r.get("retries", 0) for r in records),
            "cache_hits": sum(r.get("cached_answers", 0) for r in records),
            "failed_attempts": dict(sorted(causes.items())), **tokens,
            "cost_usd": estimate_cost(returned[0] if returned else scorer["model"], tokens["prompt_tokens"],
                                      tokens["completion_tokens"], price),
            "cost_note": "estimated from list prices (USD per 1M tokens) for the answers paid for in this scoring; "
                         "cached answers cost nothing"}


def summarize(records: Sequence[Mapping[str, Any]], context: Mapping[str, Any],
              scorer: Mapping[str, Any]) -> dict[str, Any]:
    """The summary body: strict and parity per language, the headline, the judge, failures, the case set."""
    strict, parity = summarize_strict(records), summarize_parity(records)
    lang = headline_language({"strict": strict})
    head = (parity if context["mode"] == "parity" else strict).get(lang) if lang else None
    price = tuple(context["price"]) if context.get("price") else None
    return {"mode": context["mode"], "language": context["language"], "profile": context["profile"],
            "headline_language": lang, "overall": head["O"] if head else None,
            "SC": head["SC"] if head else None, "PQ": head["PQ"] if head else None,
            "strict": strict, "parity": parity, "judge": judge_block(records, scorer, price),
            "failures": [{"case": r["case"], "status": r["status"], "reason": r["reason"]}
                         for r in records if r["status"] != "scored"],
            "prompt_set": context["prompt_set"], "prompts": context["prompts"]}


def write_results(records: Sequence[Mapping[str, Any]], out: Path, images_dir: Path,
                  context: Mapping[str, Any]) -> None:
    """``results.jsonl`` (one line per case, dataset order) and the official per-group CSVs."""
    lines = [dumps({k: r.get(k) for k in RESULT_FIELDS}, ensure_ascii=False) for r in records]
    atomic_write_text(out / "results.jsonl", "\n".join(lines) + "\n")
    method = out.resolve().name
    folder = out / context["backbone"] / "eval_results_new"
    rows = official_rows(records)
    groups = ordered_groups({*context["groups"], *(r["task_type"] for r in records)})
    for group in [*groups, "combined"]:
        chosen = [row for row in rows if group in ("combined", row[0]["task_type"])]
        atomic_write_text(folder / f"{method}_{group}_gpt_score.csv", official_csv(chosen, images_dir))


def official_csv(rows: Sequence[tuple[Mapping[str, Any], float, float]], images_dir: Path) -> str:
    """The official scorer's CSV columns (``sementics`` as spelled there), one row per parsed case."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r, sc, pq in rows:
        writer.writerow([str(images_dir / r["source"]), str(images_dir / r["image"]), r["instruction"], sc, pq,
                         bool(r["intersection"]), r["language"]])
    return buf.getvalue()


def store_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows for the store's ``scores`` table: status, strict SC/PQ/O and the parity outcome."""
    return [{"key": r["key"], "image": r["image"], "item_id": r["case"], "tag": r["task_type"], "correct": None,
             "reason": r["status"] + (f": {r['reason']}" if r.get("reason") else ""),
             "details": {"language": r["language"], "SC": r.get("SC"), "PQ": r.get("PQ"), "O": r.get("O"),
                         "parity": r.get("parity"), "judge_model": r.get("judge_model")}} for r in records]
