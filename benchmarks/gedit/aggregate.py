"""GEdit aggregation: per task group and language SC, PQ, O; the model score = unweighted mean of the groups.

Pure functions over per-case records (no I/O). A record has ``task_type``, ``language``, ``intersection``,
``status`` (``scored``/``parse_failed``/``judge_failed``), strict ``SC``/``PQ``/``O`` and ``parity`` (the
official loop's outcome: ``decided``, ``SC``, ``PQ``, ``SC_guess``, ``PQ_guess``; ``missing`` for a case without
images).

* **strict**: per group the mean over its scored cases of SC, PQ and O = sqrt(SC·PQ) per case; overall = mean of
  the group values; failures counted per group (coverage, and O with failures as 0: a lower bound), never dropped.
* **parity**: ``calculate_statistics.py`` on the rows the official scorer would write with a parsed answer:
  per group ``mean`` of SC, PQ and O (O recomputed per row), overall = mean over the groups (a group without rows
  makes it undefined, as NaN does there). Cases where the official code draws a random score (or would not stop)
  are left out and reported: their number and the interval of official values they allow, every unknown score
  0 ... every unknown score 10. Cases without images are skipped, as there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from harness.benchmarks.gedit.data import GROUPS, LANGUAGES, ordered_groups
from harness.benchmarks.gedit.parse import official_overall

STATUSES: tuple[str, ...] = ("scored", "parse_failed", "judge_failed")
Record = Mapping[str, Any]


def mean(values: Sequence[float]) -> float | None:
    """``np.mean`` (its pairwise summation, as the official statistics), None for no values (NaN there)."""
    if not values:
        return None
    import numpy as np

    return float(np.mean(np.asarray(values, dtype=float)))


def _macro(groups: Mapping[str, Mapping[str, Any]], name: str, *, strict_nan: bool = False) -> float | None:
    """Mean of the groups' ``name`` values; with ``strict_nan`` a group without one makes it undefined (NaN)."""
    values = [g.get(name) for g in groups.values()]
    if strict_nan and any(v is None for v in values):
        return None
    return mean([v for v in values if v is not None])


def by_group(records: Sequence[Record]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for r in records:
        out.setdefault(r["task_type"], []).append(r)
    return {g: out[g] for g in ordered_groups(out)}


def languages_of(records: Sequence[Record]) -> list[str]:
    present = {r["language"] for r in records}
    return [lang for lang in LANGUAGES if lang in present] + sorted(present - set(LANGUAGES))


# -- strict -------------------------------------------------------------------------------------------------
def strict_block(records: Sequence[Record]) -> dict[str, Any]:
    """Per group and overall (macro) SC/PQ/O over scored cases, with counts and the failures-as-0 bound."""
    groups = {}
    for g, rows in by_group(records).items():
        scored = [r for r in rows if r["status"] == "scored"]
        counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
        groups[g] = {"SC": mean([r["SC"] for r in scored]), "PQ": mean([r["PQ"] for r in scored]),
                     "O": mean([r["O"] for r in scored]), "cases": len(rows), **counts,
                     "coverage": counts["scored"] / len(rows),
                     "O_failed_as_0": sum(r["O"] for r in scored) / len(rows)}
    counts = {s: sum(r["status"] == s for r in records) for s in STATUSES}
    return {"SC": _macro(groups, "SC"), "PQ": _macro(groups, "PQ"), "O": _macro(groups, "O"),
            "O_failed_as_0": _macro(groups, "O_failed_as_0"),
            "micro_O": mean([r["O"] for r in records if r["status"] == "scored"]),
            "groups": groups, "cases": len(records), **counts,
            "coverage": counts["scored"] / len(records) if records else 0.0,
            "complete": set(groups) >= set(GROUPS) and all(v["O"] is not None for v in groups.values())}


def summarize_strict(records: Sequence[Record]) -> dict[str, Any]:
    """Per language: the full set and the intersection subset."""
    out = {}
    for lang in languages_of(records):
        rows = [r for r in records if r["language"] == lang]
        block = strict_block(rows)
        block["intersection"] = strict_block([r for r in rows if r.get("intersection")])
        out[lang] = block
    return out


# -- parity -------------------------------------------------------------------------------------------------
def official_rows(records: Sequence[Record]) -> list[tuple[Record, float, float]]:
    """The rows the official scorer writes with a parsed answer: (record, SC, PQ), dataset order."""
    rows = []
    for r in records:
        p = r.get("parity") or {}
        if p.get("decided") and not p.get("SC_guess") and not p.get("PQ_guess"):
            rows.append((r, p["SC"], p["PQ"]))
    return rows


def _bounded(records: Sequence[Record], fill: float) -> list[tuple[float, float]]:
    """Every imaged row's (SC, PQ) with each unknown score (guessed, or undecided) set to ``fill``."""
    out = []
    for r in records:
        p = r.get("parity") or {}
        if p.get("missing"):
            continue
        decided = bool(p.get("decided"))
        sc = p["SC"] if decided and not p.get("SC_guess") else fill
        pq = p["PQ"] if decided and not p.get("PQ_guess") else fill
        out.append((sc, pq))
    return out


def _o(sc: float, pq: float) -> float:
    o = official_overall(sc, pq)
    return math.nan if o is None else o


def parity_block(records: Sequence[Record]) -> dict[str, Any]:
    """``calculate_statistics.py`` per group and overall on the parsed rows, with the unknowns' interval."""
    groups = {}
    for g, rows in by_group(records).items():
        known = official_rows(rows)
        lo, hi = _bounded(rows, 0.0), _bounded(rows, 10.0)
        imaged = [r for r in rows if not (r.get("parity") or {}).get("missing")]
        guessed = sum(bool((r.get("parity") or {}).get("decided")) and bool(
            r["parity"].get("SC_guess") or r["parity"].get("PQ_guess")) for r in imaged)
        groups[g] = {
            "SC": mean([sc for _, sc, _ in known]), "PQ": mean([pq for _, _, pq in known]),
            "O": mean([_o(sc, pq) for _, sc, pq in known]), "rows": len(known),
            "guessed": guessed, "undecided": sum(not (r.get("parity") or {}).get("decided") for r in imaged),
            "missing_images": len(rows) - len(imaged),
            "interval": {"SC": [mean([s for s, _ in lo]), mean([s for s, _ in hi])],
                         "PQ": [mean([q for _, q in lo]), mean([q for _, q in hi])],
                         "O": [mean([_o(s, q) for s, q in lo]), mean([_o(s, q) for s, q in hi])]},
        }
    interval = {m: [_macro({g: {"v": v["interval"][m][i]} for g, v in groups.items()}, "v", strict_nan=True)
                    for i in (0, 1)] for m in ("SC", "PQ", "O")}
    return {"SC": _macro(groups, "SC", strict_nan=True), "PQ": _macro(groups, "PQ", strict_nan=True),
            "O": _macro(groups, "O", strict_nan=True), "groups": groups, "interval": interval,
            "rows": sum(v["rows"] for v in groups.values()),
            "unknown_cases": sum(v["guessed"] + v["undecided"] for v in groups.values()),
            "guessed": sum(v["guessed"] for v in groups.values()),
            "undecided": sum(v["undecided"] for v in groups.values()),
            "missing_images": sum(v["missing_images"] for v in groups.values()),
            "complete": set(groups) >= set(GROUPS)}


def summarize_parity(records: Sequence[Record]) -> dict[str, Any]:
    """Per language (``--language`` of ``calculate_statistics.py``): the full set and the intersection subset."""
    out = {}
    for lang in languages_of(records):
        rows = [r for r in records if r["language"] == lang]
        block = parity_block(rows)
        block["intersection"] = parity_block([r for r in rows if r.get("intersection")])
        out[lang] = block
    return out


# -- store and terminal ---------------------------------------------------------------------------------------
def headline_language(summary: Mapping[str, Any]) -> str | None:
    """The language of the headline number: English if scored (the number papers report), else the first."""
    langs = list((summary.get("strict") or {}).keys())
    return "en" if "en" in langs else (langs[0] if langs else None)


def metric_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows for the store's ``metrics`` table: per language overall and per group, strict and parity."""
    rows = [{"subset": "overall", "metric": "gedit", "value": summary.get("overall"), "n": None}]
    for lang, block in (summary.get("strict") or {}).items():
        parity = summary["parity"][lang]
        for m in ("SC", "PQ", "O"):
            rows.append({"subset": lang, "metric": m, "value": block[m], "n": block["scored"]})
            rows.append({"subset": lang, "metric": f"{m}_parity", "value": parity[m], "n": parity["rows"]})
        rows.append({"subset": lang, "metric": "coverage", "value": block["coverage"], "n": block["cases"]})
        rows.append({"subset": f"{lang}/intersection", "metric": "O", "value": block["intersection"]["O"],
                     "n": block["intersection"]["scored"]})
        for g, row in block["groups"].items():
            rows.append({"subset": f"{lang}/{g}", "metric": "O", "value": row["O"], "n": row["scored"]})
            rows.append({"subset": f"{lang}/{g}", "metric": "O_parity", "value": parity["groups"][g]["O"],
                         "n": parity["groups"][g]["rows"]})
    return rows


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _interval(pair: Sequence[float | None]) -> str:
    return f"[{_f(pair[0])}, {_f(pair[1])}]"


def failed_attempts(judge: Mapping[str, Any], prefix: str = "") -> str:
    """The judge's requests that brought no answer, by cause, after ``prefix``; or ''."""
    causes = judge.get("failed_attempts") or {}
    return prefix + ", ".join(f"{cause} {n}" for cause, n in causes.items()) if causes else ""


def format_table(summary: Mapping[str, Any]) -> str:
    """Terminal table per language: SC, PQ, O per group (strict and parity), overall, counts, the judge."""
    mode = summary["mode"]
    how = ("official parser and statistics on the parsed answers; guessed cases left out, their interval shown"
           if mode == "parity" else "strict parser; failures counted, never guessed")
    j = summary["judge"]
    lines = [f"{summary['label']} — gedit, mode: {mode} ({how}), judge {j['requested_model']} "
             f"(returned: {', '.join(j['returned_models']) or '-'}), profile {summary['profile']}"]
    for lang, block in summary["strict"].items():
        parity = summary["parity"][lang]
        lines.append(f"[{lang}] {'group':<18}{'SC':>7}{'PQ':>7}{'O':>7}{'O par':>8}{'scored':>8}{'parse_f':>9}"
                     f"{'judge_f':>9}{'cases':>7}")
        for g, row in block["groups"].items():
            lines.append(f"     {g:<18}{_f(row['SC']):>7}{_f(row['PQ']):>7}{_f(row['O']):>7}"
                         f"{_f(parity['groups'][g]['O']):>8}{row['scored']:>8}{row['parse_failed']:>9}"
                         f"{row['judge_failed']:>9}{row['cases']:>7}")
        head = parity if mode == "parity" else block
        lines.append(f"     {'overall':<18}{_f(head['SC']):>7}{_f(head['PQ']):>7}{_f(head['O']):>7}"
                     f"{_f(parity['O']):>8}  (mean of groups; strict O {_f(block['O'])}, failures-as-0 "
                     f"{_f(block['O_failed_as_0'])}; intersection O {_f(head['intersection']['O'])})")
        lines.append(f"     cases: {block['cases']} = {block['scored']} scored + {block['parse_failed']} parse_failed "
                     f"+ {block['judge_failed']} judge_failed (coverage {block['coverage']:.1%}); parity: "
                     f"{parity['rows']} parsed rows, {parity['unknown_cases']} with a guessed or unknown score "
                     f"(O {_interval(parity['interval']['O'])} over every guess 0 ... 10), "
                     f"{parity['missing_images']} without images")
        if not head["complete"]:
            lines.append(f"     note: not all 11 task groups scored in [{lang}]; not comparable to published numbers")
    cost = "unknown price" if j.get("cost_usd") is None else f"~${j['cost_usd']:.2f}"
    lines.append(f"judge: {j['requests']} requests ({j['retries']} retries{failed_attempts(j, '; failed: ')}), "
                 f"{j['cache_hits']} cached answers; tokens in {j['prompt_tokens']} out {j['completion_tokens']} "
                 f"({cost} this run)")
    if (summary.get("model") or {}).get("adapter") == "tiny" or "demo" in summary["label"]:
        lines.append("note: demo cases and/or random-weight tiny model — this score is meaningless")
    return "\n".join(lines)
