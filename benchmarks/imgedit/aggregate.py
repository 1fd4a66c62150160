"""ImgEdit aggregation: per case, per edit type, overall (macro mean of types); strict and parity modes.

Pure functions over per-case records (no I/O, no torch). A record has ``case``, ``edit_type``, ``status``
(``scored`` / ``parse_failed`` / ``judge_failed``), ``scores`` (three ints or None), ``answer`` (the raw
judge text or None) and ``reason``.

* **strict** (default): a case's score is the unrounded mean of its three sub-scores; a type's score is
  the mean over its scored cases; overall = unweighted mean of the type scores. Failed cases are never
  dropped silently: each type reports its counts, the coverage, and ``score_failed_as_1`` (failures
  counted as the minimum, a lower bound).
* **parity**: ``step1_get_avgscore.py`` + ``step2_typescore.py`` exactly: the official parser, per-case
  ``round(sum/len, 2)``, unparseable cases dropped, per-type ``round(sum/len, 2)``; overall = mean of the
  rounded type scores (the leaderboard's rule; no official script computes it). The cases the official
  code would drop (or crash on) are still counted here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.benchmarks.imgedit.parse import official_case_score

#: the leaderboard's column order (JSON edit_type names)
TYPE_ORDER: tuple[str, ...] = ("add", "adjust", "extract", "replace", "remove", "background", "style", "compose",
                               "action")
COLUMN = {"add": "Add", "adjust": "Adjust", "extract": "Extract", "replace": "Replace", "remove": "Remove",
          "background": "Background", "style": "Style", "compose": "Hybrid", "action": "Action"}
STATUSES: tuple[str, ...] = ("scored", "parse_failed", "judge_failed")


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def ordered_types(types: set[str] | Sequence[str]) -> list[str]:
    """Edit types in leaderboard order, unknown ones after, sorted."""
    return [t for t in TYPE_ORDER if t in types] + sorted(t for t in types if t not in TYPE_ORDER)


def summarize_strict(records: Sequence[Mapping[str, Any]], labels: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Strict-mode summary: counts by status, per-type and per-criterion means, macro/micro overall."""
    by_type: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        by_type.setdefault(r["edit_type"], []).append(r)
    types: dict[str, Any] = {}
    for t in ordered_types(set(by_type)):
        rows = by_type[t]
        scored = [r for r in rows if r["status"] == "scored"]
        means = [sum(r["scores"]) / len(r["scores"]) for r in scored]
        criteria = {label: _mean([r["scores"][i] for r in scored]) for i, label in enumerate(labels.get(t, ()))}
        counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
        failed = len(rows) - counts["scored"]
        types[t] = {
            "score": _mean(means), "cases": len(rows), **counts,
            "coverage": counts["scored"] / len(rows),
            "score_failed_as_1": (sum(means) + failed * 1.0) / len(rows),
            "criteria": criteria,
        }
    type_scores = [row["score"] for row in types.values() if row["score"] is not None]
    all_means = [sum(r["scores"]) / len(r["scores"]) for r in records if r["status"] == "scored"]
    counts = {s: sum(r["status"] == s for r in records) for s in STATUSES}
    return {
        "mode": "strict",
        "overall": _mean(type_scores),
        "overall_failed_as_1": _mean([row["score_failed_as_1"] for row in types.values()]),
        "micro": _mean(all_means),
        "types": types,
        "cases": len(records), **counts,
        "coverage": counts["scored"] / len(records) if records else 0.0,
        "complete": set(types) >= set(TYPE_ORDER) and all(row["score"] is not None for row in types.values()),
    }


def summarize_parity(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The official numbers (step1 + step2), plus what the official code silently drops or crashes on."""
    per_type: dict[str, list[float]] = {}
    dropped: dict[str, int] = {}
    failed: dict[str, int] = {}
    seen: set[str] = set()
    for r in records:
        t = r["edit_type"]
        seen.add(t)
        if r["status"] == "judge_failed" or r.get("answer") is None:
            failed[t] = failed.get(t, 0) + 1  # the official step 1 crashes on {"error": ...} entries
            continue
        score = official_case_score(r["answer"])
        if score is None:
            dropped[t] = dropped.get(t, 0) + 1
            continue
        per_type.setdefault(t, []).append(score)
    types = {}
    for t in ordered_types(seen):
        values = per_type.get(t, [])
        types[t] = {"score": round(sum(values) / len(values), 2) if values else None, "cases_kept": len(values),
                    "dropped_unparseable": dropped.get(t, 0), "judge_failed": failed.get(t, 0)}
    scores = [row["score"] for row in types.values() if row["score"] is not None]
    overall = sum(scores) / len(scores) if scores else None
    return {
        "mode": "parity",
        "overall": overall,
        "overall_2dp": round(overall, 2) if overall is not None else None,
        "types": types,
        "cases_kept": sum(len(v) for v in per_type.values()),
        "dropped_unparseable": sum(dropped.values()),
        "judge_failed": sum(failed.values()),
        "complete": set(types) >= set(TYPE_ORDER) and all(r["score"] is not None for r in types.values()),
    }


def metric_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows for the store's ``metrics`` table: overall and per type, strict and parity."""
    strict, parity = summary["strict"], summary["parity"]
    rows = [{"subset": "overall", "metric": "imgedit", "value": strict["overall"], "n": strict["scored"]},
            {"subset": "overall", "metric": "imgedit_micro", "value": strict["micro"], "n": strict["scored"]},
            {"subset": "overall", "metric": "coverage", "value": strict["coverage"], "n": strict["cases"]},
            {"subset": "overall", "metric": "imgedit_parity", "value": parity["overall"], "n": parity["cases_kept"]}]
    for t, row in strict["types"].items():
        rows.append({"subset": t, "metric": "score", "value": row["score"], "n": row["scored"]})
        rows.append({"subset": t, "metric": "score_parity", "value": parity["types"][t]["score"],
                     "n": parity["types"][t]["cases_kept"]})
    clip = summary.get("clip") or {}
    for subset, values in [("overall", clip.get("overall", {})), *clip.get("types", {}).items()]:
        rows += [{"subset": subset, "metric": name, "value": v, "n": clip["cases"]} for name, v in values.items()]
    return rows


def format_table(summary: Mapping[str, Any]) -> str:
    """Terminal table: per type (leaderboard order) score, counts; overall; which mode is the headline."""
    mode = summary["mode"]
    strict, parity = summary["strict"], summary["parity"]
    head = parity if mode == "parity" else strict
    how = ("official parser + dropping + 2-decimal rounding" if mode == "parity"
           else "strict parser; failures counted, never dropped")
    returned = ", ".join(summary["judge"]["returned_models"]) or "-"
    lines = [f"{summary['label']} — imgedit, mode: {mode} ({how}), judge {summary['judge']['requested_model']} "
             f"(returned: {returned})"]
    lines.append(f"{'type':<12}{'score':>7}{'parity':>8}{'scored':>8}{'parse_f':>9}{'judge_f':>9}{'cases':>7}")
    for t, row in strict["types"].items():
        s = "-" if row["score"] is None else f"{row['score']:.3f}"
        p = parity["types"][t]["score"]
        lines.append(f"{COLUMN.get(t, t):<12}{s:>7}{'-' if p is None else f'{p:.2f}':>8}{row['scored']:>8}"
                     f"{row['parse_failed']:>9}{row['judge_failed']:>9}{row['cases']:>7}")
    o = head["overall"]
    lines.append(f"{'overall':<12}{'-' if o is None else (f'{o:.2f}' if mode == 'parity' else f'{o:.3f}'):>7}"
                 f"  (unweighted mean of types; strict micro {_fmt(strict['micro'])}, "
                 f"parity {_fmt(parity['overall'], 2)}, failed-as-1 {_fmt(strict['overall_failed_as_1'])})")
    lines.append(f"cases: {strict['cases']} = {strict['scored']} scored + {strict['parse_failed']} parse_failed + "
                 f"{strict['judge_failed']} judge_failed (coverage {strict['coverage']:.1%}); parity kept "
                 f"{parity['cases_kept']}, dropped {parity['dropped_unparseable']} unparseable")
    j = summary["judge"]
    cost = "unknown price" if j.get("cost_usd") is None else f"~${j['cost_usd']:.2f}"
    lines.append(f"judge: {j['requests']} requests ({j['retries']} retries{failed_attempts(j, '; failed: ')}), "
                 f"{j['cache_hits']} cached; tokens in {j['prompt_tokens']} out {j['completion_tokens']} "
                 f"({cost} this run)")
    clip = summary.get("clip")
    if clip and clip.get("overall"):
        o = clip["overall"]
        lines.append(f"CLIP ({clip['spec']}, no judge): source/edit {o['clip_i']:.3f}, edit/instruction "
                     f"{o['clip_t']:.3f}, direction/instruction {o['clip_dir']:.3f} over {clip['cases']} cases")
    if not head["complete"]:
        lines.append("note: not all 9 edit types were scored; the overall is not comparable to published ImgEdit")
    if summary.get("model", {}).get("adapter") == "tiny" or "demo" in summary["label"]:
        lines.append("note: demo cases and/or random-weight tiny model — this score is meaningless")
    return "\n".join(lines)


def failed_attempts(judge: Mapping[str, Any], prefix: str = "") -> str:
    """The judge's attempts that brought no answer, by cause (``http_429 3, timeout 1``), after ``prefix``; or ''."""
    causes = judge.get("failed_attempts") or {}
    return prefix + ", ".join(f"{cause} {n}" for cause, n in causes.items()) if causes else ""


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
