"""The report: one self-contained HTML page (plus a Markdown summary for CI logs) over one or more runs.

Tables per benchmark (GenEval per tag with 95% CIs and counts; other benchmarks from their summaries),
the identity of every run (model, settings, seeds, scorer, data sha256, plugin provenance), plots,
image grids (each prompt's samples with pass/fail and the reason; a missing image is shown as missing and
still counted), and published numbers with their sources, kept apart from ours. Images are linked by
relative path (lazy-loaded), so the page opens offline next to the run folders without copying them.
"""

from __future__ import annotations

import html
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reports.compare import Comparison
from reports.published import GENEVAL, GENEVAL_COLUMNS, IMGEDIT, LATENCY
from reports.runs import RunData

CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0 18px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:10px}.prompt{border:1px solid #ddd;padding:4px;width:430px}
.prompt p{margin:2px 0;font-size:12px}.cell{display:inline-block;width:100px;vertical-align:top;font-size:10px}
.cell img,.missing{width:96px;height:96px;display:block;border:3px solid #999}.ok img{border-color:#2a2}
.bad img{border-color:#c22}
.ok .missing{border-color:#2a2}.bad .missing{border-color:#c22}
.missing{background:#eee;text-align:center;line-height:96px;color:#900}
.mark-regression{color:#c00;font-weight:bold}.mark-improvement{color:#080}code{font-size:11px}
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def md_cell(value: Any) -> str:
    """One Markdown table cell (or heading) from any text: ``&``, ``<``, ``>``, ``|``, backticks and line breaks
    escaped, so a name from a user's file stays inside its cell and never becomes HTML."""
    text = html.escape(str(value), quote=False).replace("|", "\\|").replace("`", "&#96;")
    return "<br>".join(text.splitlines()) if text else text


def md_row(cells: Sequence[Any]) -> str:
    """A Markdown table row; every cell through :func:`md_cell`."""
    return "| " + " | ".join(md_cell(c) for c in cells) + " |"


def image_cell(path: Path, out_dir: Path, alt: str, title: str = "") -> str | None:
    """A lazy ``<img>`` linking ``path`` relative to the report; a placeholder for an image over the pixel
    budget (checked from its header; the browser would decode it); None if the file is missing."""
    from harness.core.images import within_budget

    if not path.is_file():
        return None
    if not within_budget(path):
        return "<div class=missing title='over the pixel budget (--max-pixels)'>too large</div>"
    rel = os.path.relpath(path.resolve(), out_dir.resolve())
    return f"<img loading=lazy src='{esc(rel)}' alt='{esc(alt)}'" + (f" title='{esc(title)}'>" if title else ">")


def fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "–" if value is None else str(value)


def identity_rows(runs: Sequence[RunData]) -> str:
    """Model, settings, seeds, scorer, data sha256 and provenance of each run."""
    rows = []
    for run in runs:
        s = run.summary
        config = run.manifest.get("config", {})
        model = s.get("model") or {}
        prov = s.get("provenance") or {}
        plugins = ", ".join(f"{k}: {v.get('name')} ({v.get('distribution')} {v.get('version')})"
                            for k, v in sorted(prov.items()) if isinstance(v, dict))
        rows.append(
            f"<tr><td class=l>{esc(run.run_id)}</td><td class=l>{esc(run.benchmark)}</td>"
            f"<td class=l><code>{esc(json.dumps(model, sort_keys=True))}</code></td>"
            f"<td class=l>seed {esc(config.get('seed', '–'))}, {esc(config.get('images_per_prompt', '–'))}/prompt</td>"
            f"<td class=l>{esc(s.get('label', '–'))}<br><code>{esc(json.dumps(s.get('scorer', {}), sort_keys=True))}"
            f"</code></td><td class=l><code>{esc((s.get('prompt_set') or {}).get('sha256', '–'))}</code></td>"
            f"<td class=l>{esc(plugins)}</td></tr>")
    return ("<table><tr><th class=l>run</th><th class=l>benchmark</th><th class=l>model and settings</th>"
            "<th class=l>seeds</th><th class=l>scorer</th><th class=l>data sha256</th><th class=l>plugins</th></tr>"
            + "".join(rows) + "</table>")


def geneval_table(runs: Sequence[RunData]) -> str:
    head = "".join(f"<th>{esc(r.run_id)}<br>{esc(r.model_name)}</th>" for r in runs)
    rows = []
    for tag in GENEVAL_COLUMNS:
        cells = []
        for run in runs:
            s = run.summary
            if tag == "overall":
                value, ci, count = s.get("overall"), s.get("overall_ci95"), f"{s.get('images')} img"
            else:
                row = (s.get("tags") or {}).get(tag)
                if row is None:
                    cells.append("<td>–</td>")
                    continue
                value, ci, count = row["score"], row.get("ci95"), f"{row['correct_images']}/{row['images']}"
            ci_text = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
            cells.append(f"<td>{fmt(value)}{ci_text}<br><small>{esc(count)}</small></td>")
        rows.append(f"<tr><th class=l>{esc(tag)}</th>{''.join(cells)}</tr>")
    return f"<table><tr><th class=l>tag</th>{head}</tr>{''.join(rows)}</table>"


def imgedit_section(run: RunData, out_dir: Path, limit: int | None) -> tuple[str, str]:
    """Per edit type (strict and parity), status counts, judge, and a grid: source | edited with the sub-scores."""
    from benchmarks.imgedit.aggregate import failed_attempts

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
    return head + table + imgedit_grid(run, out_dir, limit), "\n".join(md_rows)


def imgedit_grid(run: RunData, out_dir: Path, limit: int | None) -> str:
    """Each case: source | edited, the three sub-scores and the status (a missing image is shown as missing)."""
    cases_path = run.out / "cases.json"
    cases = json.loads(cases_path.read_text()) if cases_path.is_file() else {}
    root = Path(((run.manifest.get("provenance") or {}).get("sources") or {}).get("root", ""))
    blocks = []
    for r in run.results[:limit]:
        source = root / cases.get(r["case"], {}).get("id", "") if cases else None
        edited = run.out / "images" / r.get("image", f"{r['case']}.png")
        cells = []
        for path, what in ((source, "source"), (edited, "edited")):
            shown = image_cell(path, out_dir, what) if path is not None else None
            cells.append(f"<div class=cell>{shown or '<div class=missing>missing</div>'}{what}</div>")
        scores = ", ".join(str(x) for x in r.get("scores") or []) or "–"
        status = r.get("status", "?") + (f": {r['reason']}" if r.get("reason") else "")
        blocks.append(f"<div class=prompt><p><b>{esc(r['case'])}</b> [{esc(r.get('edit_type'))}] "
                      f"{esc(cases.get(r['case'], {}).get('prompt', ''))}</p>{''.join(cells)}"
                      f"<p>scores {esc(scores)} — {esc(status[:120])}</p></div>")
    return f"<div class=grid>{''.join(blocks)}</div>"


def device_tables(run: RunData) -> tuple[str, str]:
    """Latency per variant/steps/resolution (median, p90, U-Net step, peak memory) and a latency-vs-steps plot."""
    from device.results import records_frame, summary_frame
    from reports.plots import latency_vs_steps

    summary = summary_frame(records_frame(run.results)) if run.results else None
    failed = sum(r.get("status") != "ok" for r in run.results)
    note = f"{run.summary.get('ok', 0)} ok attempt(s), {failed} not ok (each listed in the records)"
    if summary is None or summary.empty:
        return f"<h2>Device latency: {esc(run.run_id)}</h2><p>no ok records; {esc(note)}</p>", note
    cols = [c for c in ("variant", "runtime", "backend", "precision", "steps", "height", "width", "jobs", "iterations",
                        "e2e_ms_median", "e2e_ms_p90", "unet_step_ms_median", "peak_rss_mb", "throttled")
            if c in summary.columns]
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{fmt(row[c], 1)}</td>" for c in cols) + "</tr>"
                   for row in summary[cols].to_dict("records"))
    md = md_row(cols) + "\n|" + "---|" * len(cols) + "\n" + "\n".join(
        md_row([fmt(row[c], 1) for c in cols]) for row in summary[cols].to_dict("records"))
    device = json.dumps(run.summary.get("device") or {}, sort_keys=True)
    return (f"<h2>Device latency: {esc(run.run_id)}</h2><p>{esc(note)}; device <code>{esc(device)}</code></p>"
            f"<table><tr>{head}</tr>{body}</table>{latency_vs_steps(summary)}", md)


def generic_table(run: RunData) -> str:
    """Any other benchmark: its numeric summary fields and per-subset rows if it has them."""
    rows = [f"<tr><th class=l>{esc(k)}</th><td>{fmt(v)}</td></tr>" for k, v in sorted(run.summary.items())
            if isinstance(v, (int, float)) and not isinstance(v, bool)]
    for key in ("types", "tags", "subsets"):
        for name, row in sorted((run.summary.get(key) or {}).items()):
            value = row.get("score", row.get("mean")) if isinstance(row, dict) else row
            rows.append(f"<tr><th class=l>{esc(key)}: {esc(name)}</th><td>{fmt(value)}</td></tr>")
    return f"<h3>{esc(run.benchmark)} — {esc(run.run_id)}</h3><table>{''.join(rows)}</table>"


def ci_text(c: Comparison) -> str:
    return f"[{c.ci95[0]:+.3f}, {c.ci95[1]:+.3f}]" if c.ci95 else "–"


def comparison_table(comparisons: Sequence[Comparison]) -> str:
    rows = []
    for c in comparisons:
        ci = ci_text(c)
        rows.append(f"<tr><td class=l>{esc(c.metric)}</td><td>{fmt(c.base)}</td><td>{fmt(c.new)}</td>"
                    f"<td>{c.delta:+.3f}</td><td>{ci}</td><td>{fmt(c.p_value, 4)}</td>"
                    f"<td>{'↑' if c.higher_is_better else '↓'}</td>"
                    f"<td class='mark-{c.verdict}'>{esc(c.mark)} {esc(c.verdict)}</td></tr>")
    return ("<table><tr><th class=l>metric</th><th>base</th><th>new</th><th>Δ</th><th>95% CI</th><th>p</th>"
            "<th></th><th>mark</th></tr>" + "".join(rows) + "</table>")


def published_tables() -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in GENEVAL_COLUMNS)
    rows = "".join(f"<tr><td class=l>{esc(m)}</td>{''.join(f'<td>{fmt(v, 2)}</td>' for v in vals[:-1])}"
                   f"<td class=l><small>{esc(vals[-1])}</small></td></tr>" for m, vals in GENEVAL.items())
    edit = "".join(f"<tr><td class=l>{esc(m)}</td><td>{v:.2f}</td><td class=l><small>{esc(src)}</small></td></tr>"
                   for m, (v, src) in IMGEDIT.items())
    lat = "".join(f"<tr><td class=l>{esc(m)}</td><td class=l>{esc(v)}</td><td class=l><small>{esc(src)}</small>"
                  f"</td></tr>" for m, (v, src) in LATENCY.items())
    return (f"<h3>GenEval (published; official detector, raw prompts unless noted)</h3><table><tr><th class=l>"
            f"model</th>{head}<th class=l>source</th></tr>{rows}</table>"
            f"<h3>ImgEdit overall (published)</h3><table>{edit}</table>"
            f"<h3>On-device latency claims</h3><table>{lat}</table>")


def geneval_grid(run: RunData, out_dir: Path, limit: int | None = None) -> tuple[str, int]:
    """Each prompt's samples with pass/fail and reason; returns (html, number of missing images)."""
    by_prompt: dict[str, list[dict[str, Any]]] = {}
    for r in run.results:
        by_prompt.setdefault(Path(r["filename"]).parts[-3], []).append(r)
    blocks, missing = [], 0
    for prompt in sorted(by_prompt)[:limit]:
        items = by_prompt[prompt]
        cells = []
        for r in sorted(items, key=lambda x: x["filename"]):
            path = Path(r["filename"])
            if not path.is_absolute() and not path.exists():
                path = run.out.parent / path if (run.out.parent / path).exists() else run.out / path
            reason = r["reason"] or "correct"
            shown = image_cell(path, out_dir, path.name, reason)
            if shown:
                cells.append(f"<div class='cell {'ok' if r['correct'] else 'bad'}'>{shown}{esc(reason[:60])}</div>")
            else:
                missing += 1
                cells.append(f"<div class='cell {'ok' if r['correct'] else 'bad'}'><div class=missing>missing</div>"
                             f"{'✓' if r['correct'] else '✗'} {esc(reason[:60])}</div>")
        blocks.append(f"<div class=prompt><p><b>{esc(prompt)}</b> [{esc(items[0]['tag'])}] {esc(items[0]['prompt'])}"
                      f"</p>{''.join(cells)}</div>")
    return f"<div class=grid>{''.join(blocks)}</div>", missing


def geneval_markdown(runs: Sequence[RunData]) -> str:
    lines = [md_row(["tag", *(f"{r.run_id} ({r.model_name})" for r in runs)]), "|---|" + "---|" * len(runs)]
    for tag in GENEVAL_COLUMNS:
        vals = []
        for run in runs:
            v = run.summary.get("overall") if tag == "overall" else ((run.summary.get("tags") or {}).get(tag) or {}
                                                                      ).get("score")
            vals.append(fmt(v))
        lines.append(md_row([tag, *vals]))
    return "\n".join(lines)


def build_report(runs: Sequence[RunData], out_dir: Path, *, comparisons: Sequence[Comparison] = (),
                 history_svg: str = "", bars_svg: str = "", grid_limit: int | None = None) -> tuple[Path, Path]:
    """Write ``index.html`` and ``summary.md`` into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    geneval = [r for r in runs if r.benchmark == "geneval"]
    others = [r for r in runs if r.benchmark != "geneval"]
    parts = [f"<h1>dreamlite-harness report</h1><p>{len(runs)} run(s), generated "
             f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}</p><h2>Runs</h2>{identity_rows(runs)}"]
    md = [f"# dreamlite-harness report ({len(runs)} run(s))", ""]
    if comparisons:
        parts.append(f"<h2>Comparison (base = first run)</h2>{comparison_table(comparisons)}")
        md += ["| metric | base | new | Δ | 95% CI | p | mark |", "|---|---|---|---|---|---|---|"]
        md += [md_row([c.metric, fmt(c.base), fmt(c.new), f"{c.delta:+.3f}", ci_text(c), fmt(c.p_value, 4),
                       f"{c.mark} {c.verdict}"]) for c in comparisons]
        md.append("")
    missing_total = 0
    if geneval:
        labels = sorted({r.summary.get("label", "?") for r in geneval})
        parts.append(f"<h2>GenEval ({esc(', '.join(labels))})</h2>{geneval_table(geneval)}{bars_svg}")
        md += [f"## GenEval ({md_cell(', '.join(labels))})", geneval_markdown(geneval), ""]
        for run in geneval:
            grid, missing = geneval_grid(run, out_dir, grid_limit)
            missing_total += missing
            note = f" — {missing} image(s) missing, still counted" if missing else ""
            parts.append(f"<h3>Images: {esc(run.run_id)} ({esc(run.model_name)}){esc(note)}</h3>{grid}")
    for run in others:
        if run.benchmark == "imgedit":
            table, md_table = imgedit_section(run, out_dir, grid_limit)
            parts.append(table)
            md += [f"## ImgEdit: {md_cell(run.run_id)}", md_table, ""]
        elif run.benchmark == "device":
            table, md_table = device_tables(run)
            parts.append(table)
            md += [f"## Device latency: {md_cell(run.run_id)}", md_table, ""]
        else:
            parts.append(generic_table(run))
    if history_svg:
        parts.append(f"<h2>History</h2>{history_svg}")
    parts.append(f"<h2>Published numbers (for context; not produced by this harness)</h2>{published_tables()}")
    if missing_total:
        md.append(f"Note: {missing_total} image(s) referenced by results are missing (shown as missing, counted).")
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>dreamlite-harness report</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
    html_path, md_path = out_dir / "index.html", out_dir / "summary.md"
    html_path.write_text(page, encoding="utf-8")
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")
    return html_path, md_path
