"""ImgEdit in reports: per edit type (strict and parity), status counts, the judge's accounting, and a grid of
source | edited with the three sub-scores; published numbers with their sources (docs/imgedit.md, 'Published
numbers')."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.api import reporting
from harness.api.reporting import Paired, PublishedTable, RunData, Section, esc, fmt, image_cell, md_row

#: ImgEdit overall (GPT-4.1-judged leaderboard unless noted) -> (score, source)
IMGEDIT: dict[str, tuple[float, str]] = {
    "DreamLite (0.39B)": (4.11, "P: DreamLite README; judge not stated, not comparable to the GPT-4.1 board"),
    "FLUX.1 Kontext": (3.76, "P: DreamLite README table"),
    "BAGEL": (3.42, "P: DreamLite README table"),
    "OmniGen2": (3.44, "P: DreamLite README table"),
    "LongCat-Image-Edit": (4.49, "P: DreamLite README table"),
    "VIBE": (3.85, "P: DreamLite README table"),
}


def paired_scores(run: RunData) -> Paired:
    """Per case, its edit type and the mean of its three judge scores (scored cases only)."""
    items: dict[str, tuple[str, dict[str, float]]] = {}
    for r in run.results:
        if r.get("status") == "scored" and r.get("scores"):
            items[r["case"]] = (r["edit_type"], {"mean": sum(r["scores"]) / len(r["scores"])})
    return Paired(items)


def summary_rows(run: RunData) -> list[tuple[str, Any, Any, str]]:
    """``(edit type, strict score, -, counts)``: the headline overall first."""
    strict = run.summary.get("strict") or {}
    rows = [("overall", run.summary.get("overall"), None, f"mode {run.summary.get('mode')}")]
    rows += [(t, row.get("score"), None, f"{row.get('scored')}/{row.get('cases')} scored")
             for t, row in (strict.get("types") or {}).items()]
    return rows


def section(runs: Sequence[RunData], out_dir: Path, limit: int | None) -> Section:
    """One part per run: its table, the judge line and its grid."""
    return reporting.per_run_section(runs, "ImgEdit", lambda run: run_section(run, out_dir, limit))


def run_section(run: RunData, out_dir: Path, limit: int | None) -> tuple[str, str]:
    """Per edit type (strict and parity), status counts, judge, and a grid: source | edited with the sub-scores."""
    from harness.benchmarks.imgedit.aggregate import failed_attempts

    s = run.summary
    strict, parity = s.get("strict") or {}, s.get("parity") or {}
    md_rows = ["| type | score | parity | cases | scored | parse_failed | judge_failed |", "|---" * 7 + "|"]
    rows = []
    for t, row in (strict.get("types") or {}).items():
        p = ((parity.get("types") or {}).get(t) or {}).get("score")
        cells = [fmt(row.get("score")), fmt(p), row.get("cases"), row.get("scored"), row.get("parse_failed"),
                 row.get("judge_failed")]
        rows.append(f"<tr><th class=l>{esc(t)}</th>" + "".join(f"<td>{fmt(c)}</td>" for c in cells) + "</tr>")
        md_rows.append(md_row([t, *(fmt(c) for c in cells)]))
    overall = [fmt(strict.get("overall")), fmt(parity.get("overall")), strict.get("cases"), strict.get("scored"),
               strict.get("parse_failed"), strict.get("judge_failed")]
    rows.append("<tr><th class=l>overall</th>" + "".join(f"<td>{fmt(c)}</td>" for c in overall) + "</tr>")
    md_rows.append(md_row(["overall", *(fmt(c) for c in overall)]))
    judge = s.get("judge") or {}
    returned = ", ".join(judge.get("returned_models") or [])
    head = (f"<h2>ImgEdit: {esc(run.run_id)} ({esc(run.model_name)}), mode {esc(s.get('mode'))}</h2>"
            f"<p>judge {esc(judge.get('requested_model'))} (returned: {esc(returned)}"
            f"), requests {esc(judge.get('requests'))} (retries {esc(judge.get('retries', 0))}"
            f"{esc(failed_attempts(judge, '; failed: '))}), cost ≈ ${fmt(judge.get('cost_usd'), 2)}</p>")
    table = ("<table><tr><th class=l>type</th><th>score</th><th>parity</th><th>cases</th><th>scored</th>"
             "<th>parse_failed</th><th>judge_failed</th></tr>" + "".join(rows) + "</table>")
    return head + table + grid(run, out_dir, limit), "\n".join(md_rows)


def grid(run: RunData, out_dir: Path, limit: int | None) -> str:
    """Each case: source | edited, the three sub-scores and the status (a missing image is shown as missing)."""
    cases_path = run.out / "cases.json"
    cases = json.loads(cases_path.read_text(encoding="utf-8")) if cases_path.is_file() else {}
    root = Path(((run.manifest.get("provenance") or {}).get("sources") or {}).get("root", ""))
    blocks = []
    for r in run.results[:limit]:
        source = root / cases.get(r["case"], {}).get("id", "") if cases else None
        edited = run.out / "images" / r.get("image", f"{r['case']}.png")
        cells = [image_cell(path, out_dir, what) for path, what in ((source, "source"), (edited, "edited"))]
        scores = ", ".join(str(x) for x in r.get("scores") or []) or "–"
        status = r.get("status", "?") + (f": {r['reason']}" if r.get("reason") else "")
        blocks.append(f"<div class=prompt><p><b>{esc(r['case'])}</b> [{esc(r.get('edit_type'))}] "
                      f"{esc(cases.get(r['case'], {}).get('prompt', ''))}</p>{''.join(cells)}"
                      f"<p>scores {esc(scores)} — {esc(status[:120])}</p></div>")
    return f"<div class=grid>{''.join(blocks)}</div>"


def published() -> list[PublishedTable]:
    return [PublishedTable("ImgEdit overall (published)", ["overall"],
                           [(model, [score], source) for model, (score, source) in IMGEDIT.items()])]
