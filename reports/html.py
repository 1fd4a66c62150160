"""The report: one self-contained HTML page (plus a Markdown summary for CI logs) over one or more runs.

Generic over every benchmark: the identity of every run (model, settings, seeds, scorer, data sha256, plugin
provenance), the comparison if any, then each benchmark's own section (its tables, plots and image grids,
from its ``Reportable``), runs measured on a device next to their reference (:mod:`harness.reports.deployed`),
the store's history, and the published numbers of the benchmarks shown, with
their sources, kept apart from ours. Images are linked by relative path (lazy-loaded), so the page opens
offline next to the run folders without copying them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from harness.api.reporting import PublishedTable, RunData, esc, fmt, md, md_row
from harness.core.paths import folder_arg
from harness.reports.compare import Comparison
from harness.reports.deployed import section as deployed_section
from harness.reports.regression import reportable

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


def ci_text(c: Comparison) -> str:
    return f"[{c.ci95[0]:+.3f}, {c.ci95[1]:+.3f}]" if c.ci95 else "–"


def comparison_table(comparisons: Sequence[Comparison]) -> tuple[str, str]:
    """The comparison as HTML and Markdown: one row per metric with Δ, interval, p and the mark."""
    rows, md_rows = [], ["| metric | base | new | Δ | 95% CI | p | mark |", "|---|---|---|---|---|---|---|"]
    for c in comparisons:
        rows.append(f"<tr><td class=l>{esc(c.metric)}</td><td>{fmt(c.base)}</td><td>{fmt(c.new)}</td>"
                    f"<td>{c.delta:+.3f}</td><td>{ci_text(c)}</td><td>{fmt(c.p_value, 4)}</td>"
                    f"<td>{'↑' if c.higher_is_better else '↓'}</td>"
                    f"<td class='mark-{c.verdict}'>{esc(c.mark)} {esc(c.verdict)}</td></tr>")
        md_rows.append(md_row([c.metric, fmt(c.base), fmt(c.new), f"{c.delta:+.3f}", ci_text(c), fmt(c.p_value, 4),
                               f"{c.mark} {c.verdict}"]))
    return ("<table><tr><th class=l>metric</th><th>base</th><th>new</th><th>Δ</th><th>95% CI</th><th>p</th>"
            "<th></th><th>mark</th></tr>" + "".join(rows) + "</table>", "\n".join(md_rows))


def published_table(table: PublishedTable) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in table.columns)
    rows = "".join(f"<tr><td class=l>{esc(model)}</td>{''.join(f'<td>{esc(fmt(v, 2))}</td>' for v in values)}"
                   f"<td class=l><small>{esc(source)}</small></td></tr>" for model, values, source in table.rows)
    return (f"<h3>{esc(table.title)}</h3><table><tr><th class=l>model</th>{head}<th class=l>source</th></tr>"
            f"{rows}</table>")


def build_report(runs: Sequence[RunData], out_dir: Path, *, comparisons: Sequence[Comparison] = (),
                 history_svg: str = "", grid_limit: int | None = None) -> tuple[Path, Path]:
    """Write ``index.html`` and ``summary.md`` into ``out_dir``; return their paths."""
    folder_arg(out_dir, flag="--out")
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [f"<h1>dreamlite-harness report</h1><p>{len(runs)} run(s), generated "
             f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}</p><h2>Runs</h2>{identity_rows(runs)}"]
    markdown = [f"# dreamlite-harness report ({len(runs)} run(s))", ""]
    if comparisons:
        table, md_table = comparison_table(comparisons)
        parts.append(f"<h2>Comparison (base = first run)</h2>{table}")
        markdown += [md_table, ""]
    by_benchmark: dict[str, list[RunData]] = {}
    for run in runs:
        by_benchmark.setdefault(run.benchmark, []).append(run)
    missing_total = 0
    published: list[PublishedTable] = []
    for name, group in by_benchmark.items():
        kind = reportable(name)
        section = kind.report_section(group, out_dir, grid_limit)
        parts.append(section.html)
        markdown += [section.markdown, ""]
        missing_total += section.missing_images
        published += kind.published()
    deployed = deployed_section(runs, out_dir, grid_limit)
    if deployed is not None:
        parts.append(deployed.html)
        markdown += [deployed.markdown, ""]
        missing_total += deployed.missing_images
    if history_svg:
        parts.append(f"<h2>History</h2>{history_svg}")
    if published:
        parts.append("<h2>Published numbers (for context; not produced by this harness)</h2>"
                     + "".join(published_table(t) for t in published))
    if missing_total:
        markdown.append(f"Note: {missing_total} image(s) referenced by results are missing (shown as missing, "
                        "counted).")
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>dreamlite-harness report</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
    html_path, md_path = out_dir / "index.html", out_dir / "summary.md"
    html_path.write_text(page, encoding="utf-8")
    md_path.write_text("\n".join(markdown) + "\n", encoding="utf-8")
    return html_path, md_path


__all__ = ["build_report", "comparison_table", "md"]
