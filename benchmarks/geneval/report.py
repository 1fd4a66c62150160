"""GenEval in reports: the per-tag table with 95% intervals and counts, bars, image grids, published numbers.

Every prompt's samples are shown with pass/fail and the reason; an image referenced by the results but
missing is shown as missing and still counted. Published numbers come from the papers and project pages
named beside them (docs/geneval.md, 'Published numbers') and are never mixed with ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.api.reporting import Paired, PublishedTable, RunData, Section, bars_svg, esc, image_cell, summary_table
from harness.core.errors import HarnessError

COLUMNS = ("overall", "single_object", "two_object", "counting", "colors", "position", "color_attr")

#: model -> (overall, single, two, counting, colors, position, color_attr, source); None = not published
GENEVAL: dict[str, tuple[float | None, ...] | tuple] = {
    "SD v1.5": (0.43, 0.97, 0.38, 0.35, 0.76, 0.04, 0.06, "P: GenEval README"),
    "SD v2.1": (0.50, 0.98, 0.51, 0.44, 0.85, 0.07, 0.17, "P: GenEval README"),
    "SDXL": (0.55, 0.98, 0.74, 0.39, 0.85, 0.15, 0.23, "P: GenEval README"),
    "IF-XL": (0.61, 0.97, 0.74, 0.66, 0.81, 0.13, 0.35, "P: GenEval README"),
    "PixArt-α": (0.48, 0.98, 0.50, 0.44, 0.80, 0.08, 0.07, "S: many tables agree"),
    "SD3-Medium (2B)": (0.62, 0.98, 0.74, 0.63, 0.67, 0.34, 0.36, "S: SANA/Janus-Pro lineage tables"),
    "SD3.5-Large": (0.71, 0.98, 0.89, 0.73, 0.83, 0.34, 0.47, "S"),
    "FLUX.1-dev": (0.66, 0.98, 0.81, 0.74, 0.79, 0.22, 0.45, "S: Janus-Pro lineage"),
    "FLUX.1-schnell": (0.71, 0.99, 0.92, 0.73, 0.78, 0.28, 0.54, "S"),
    "SANA-0.6B": (0.64, 0.99, 0.76, 0.64, 0.88, 0.18, 0.39, "S: SANA paper values"),
    "SANA-1.6B": (0.66, 0.99, 0.77, 0.62, 0.88, 0.21, 0.47, "S"),
    "DALL-E 3": (0.67, 0.96, 0.87, 0.47, 0.83, 0.43, 0.45, "S"),
    "SnapGen (0.38B)": (0.66, 1.00, 0.84, 0.60, 0.88, 0.18, 0.45,
                        "overall P: snap-research.github.io/snapgen; per-tag S"),
    "SnapGen++ small (0.4B)": (0.70, None, None, None, None, None, None, "P: project page"),
    "JuZhou 1.0 (0.387B)": (0.69, 0.99, 0.87, 0.61, 0.88, 0.24, 0.55, "S: self-reported README"),
    "DreamLite (0.39B)": (0.72, None, None, None, None, None, None,
                          "P: arXiv 2603.28713 abstract; per-tag not published; base vs mobile not stated"),
}


def paired_scores(run: RunData) -> Paired:
    """Per prompt folder, its tag and each image's verdict (1.0 correct), from ``results.jsonl``."""
    items: dict[str, tuple[str, dict[str, float]]] = {}
    for r in run.results:
        parts = Path(r["filename"]).parts
        if len(parts) < 3:
            raise HarnessError(f"{run.out / 'results.jsonl'}: filename {r['filename']!r} is not "
                               ".../NNNNN/samples/FILE.png; rerun `harness merge {run.out}`")
        items.setdefault(parts[-3], (r["tag"], {}))[1][parts[-1]] = float(bool(r["correct"]))
    return Paired(items)


def summary_rows(run: RunData) -> list[tuple[str, Any, Any, str]]:
    """``(tag, score, ci95, counts)``: the overall first, then each tag the run has."""
    s = run.summary
    rows = [("overall", s.get("overall"), s.get("overall_ci95"), f"{s.get('images')} img")]
    for tag in COLUMNS[1:]:
        row = (s.get("tags") or {}).get(tag)
        if isinstance(row, dict):
            rows.append((tag, row.get("score"), row.get("ci95"), f"{row.get('correct_images')}/{row.get('images')}"))
    return rows


def section(runs: Sequence[RunData], out_dir: Path, grid_limit: int | None) -> Section:
    """The per-tag table of every run, bars with intervals, and each run's image grid."""
    labels = sorted({str(r.summary.get("label", "?")) for r in runs})
    table, markdown = summary_table("tag", runs, summary_rows)
    parts = [f"<h2>GenEval ({esc(', '.join(labels))})</h2>{table}{bars_svg(runs, COLUMNS, summary_rows)}"]
    missing_total = 0
    for run in runs:
        grid, missing = image_grid(run, out_dir, grid_limit)
        missing_total += missing
        note = f" — {missing} image(s) missing, still counted" if missing else ""
        parts.append(f"<h3>Images: {esc(run.run_id)} ({esc(run.model_name)}){esc(note)}</h3>{grid}")
    return Section("".join(parts), f"## GenEval ({', '.join(labels)})\n{markdown}", missing_total)


def image_grid(run: RunData, out_dir: Path, limit: int | None = None) -> tuple[str, int]:
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
            if not path.is_file():
                missing += 1
            mark = "" if path.is_file() else ("✓ " if r["correct"] else "✗ ")
            cells.append(image_cell(path if path.is_file() else None, out_dir, mark + reason[:60],
                                    css="ok" if r["correct"] else "bad", title=reason))
        blocks.append(f"<div class=prompt><p><b>{esc(prompt)}</b> [{esc(items[0]['tag'])}] {esc(items[0]['prompt'])}"
                      f"</p>{''.join(cells)}</div>")
    return f"<div class=grid>{''.join(blocks)}</div>", missing


def published() -> list[PublishedTable]:
    """Published GenEval numbers (official detector, raw prompts unless noted), with sources."""
    rows = [(model, list(values[:-1]), str(values[-1])) for model, values in GENEVAL.items()]
    return [PublishedTable("GenEval (published; official detector, raw prompts unless noted)", COLUMNS, rows)]
