"""DPG-Bench in reports: L1/L2 categories in both modes, counts, a grid of tiles with their scores, and the
published overall scores with their sources (docs/dpg.md, "Published numbers"), never mixed with ours."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.api import reporting
from harness.api.reporting import Paired, PublishedTable, RunData, Section, esc, fmt, image_cell, md, md_row
from harness.benchmarks.dpg.results import counts_line

#: model -> (DPG-Bench overall, source); secondary sources, as transcribed in docs/dpg.md
DPG: dict[str, tuple[float, str]] = {
    "SD v1.5": (63.18, "TokenFlow paper (arXiv 2412.03069) Table 10"),
    "PixArt-α": (71.11, "TokenFlow paper Table 10"),
    "SDXL": (74.65, "TokenFlow paper Table 10"),
    "Emu3-Gen": (80.60, "TokenFlow paper Table 10"),
    "DALL-E 3": (83.50, "TokenFlow paper Table 10; UniGen-LingXi README"),
    "SD3-Medium": (84.08, "UniReasoner (arXiv 2605.04040) tables"),
    "FLUX.1-dev": (83.84, "UniGen-LingXi README; UniReasoner tables (DreamLite README: 84.0)"),
    "Janus-Pro-7B": (84.19, "UniReasoner tables"),
    "SANA-0.6B": (83.6, "DreamLite README"),
    "SANA-1.6B": (84.8, "DreamLite README"),
    "BAGEL": (85.1, "DreamLite README"),
    "OmniGen2": (83.6, "DreamLite README"),
    "GPT Image 1 [High]": (85.15, "UniGen-1.5 table"),
    "BLIP3-o 8B": (81.60, "UniGen-1.5 table (a re-run of the open release: 80.73)"),
    "Seedream 3.0": (88.27, "UniGen-LingXi README"),
    "Qwen-Image": (88.32, "UniGen-LingXi README"),
    "LongCat-Image": (86.6, "DreamLite README"),
    "DeepGen1.0": (84.6, "DreamLite README"),
    "SnapGen++ (small)": (85.2, "DreamLite README"),
    "DreamLite (0.39B)": (85.8, "DreamLite README; base vs mobile and settings not stated"),
}
#: SDXL's published categories (TokenFlow paper Table 10), the only model with them in docs/dpg.md
SDXL_L1 = {"global": 83.27, "entity": 82.43, "attribute": 80.91, "relation": 86.76, "other": 80.41}


def paired_scores(run: RunData) -> Paired:
    """Per prompt, its family and each tile's score (0-100) in the run's headline mode; a prompt the parity
    mode dropped has none."""
    parity = run.summary.get("mode") == "parity"
    items: dict[str, tuple[str, dict[str, float]]] = {}
    for r in run.results:
        values = r.get("parity_tile_scores") if parity else r.get("tile_scores")
        if values:
            items[r["item_id"]] = (r.get("family", ""), {str(k): float(v) for k, v in enumerate(values)})
    return Paired(items)


def summary_rows(run: RunData) -> list[tuple[str, Any, Any, str]]:
    """``(subset, headline score, -, counts)``: the overall, then the L1 categories."""
    s = run.summary
    strict = s.get("strict") or {}
    rows = [("overall", s.get("overall"), None, f"mode {s.get('mode')}, {strict.get('scored')}/{strict.get('images')}")]
    rows += [(name, value, None, "L1") for name, value in (s.get("l1") or {}).items()]
    return rows


def section(runs: Sequence[RunData], out_dir: Path, limit: int | None) -> Section:
    """Per run: both modes by category, counts, and its tiles with their scores."""
    return reporting.per_run_section(runs, "DPG-Bench", lambda run: run_section(run, out_dir, limit))


def run_section(run: RunData, out_dir: Path, limit: int | None) -> tuple[str, str]:
    s = run.summary
    strict, parity = s.get("strict") or {}, s.get("parity") or {}
    names = [("overall", "overall")] + [(f"L1 {k}", ("l1", k)) for k in sorted(strict.get("l1") or {})] + [
        (f"L2 {k}", ("l2", k)) for k in sorted(strict.get("l2") or {})]
    md_rows = ["| category | strict | parity |", "|---|---|---|"]
    rows = []
    for shown, key in names:
        values = [mode.get("overall") if key == "overall" else (mode.get(key[0]) or {}).get(key[1])
                  for mode in (strict, parity)]
        rows.append(f"<tr><th class=l>{esc(shown)}</th>" + "".join(f"<td>{fmt(v, 2)}</td>" for v in values) + "</tr>")
        md_rows.append(md_row([shown, *(fmt(v, 2) for v in values)]))
    counts = counts_line(s)
    head = (f"<h2>DPG-Bench: {esc(run.run_id)} ({esc(run.model_name)}) — {esc(s.get('label'))}, mode "
            f"{esc(s.get('mode'))}</h2><p>{esc(counts)}</p><table><tr><th class=l>category</th><th>strict</th>"
            f"<th>parity</th></tr>{''.join(rows)}</table>")
    return head + tile_grid(run, out_dir, limit), f"{md(s.get('label'))}, mode {md(s.get('mode'))}; {md(counts)}\n" + \
        "\n".join(md_rows)


def tile_grid(run: RunData, out_dir: Path, limit: int | None) -> str:
    """Each prompt's tile (or first image) with its strict score and failure, if any."""
    cells = []
    for r in run.results[:limit]:
        path = run.out / r["file"]
        if not path.is_file() and r.get("images"):
            path = run.out / "images" / str(r["images"][0]).split("#")[0]
        caption = f"{r['item_id']}: {fmt(r.get('score'), 1)}" + (f" ({r['failure']})" if r.get("failure") else "")
        cells.append(image_cell(path, out_dir, caption[:80], css="bad" if r.get("failure") else "ok",
                                title=str(r.get("prompt", ""))))
    return f"<div class=grid>{''.join(cells)}</div>"


def published() -> list[PublishedTable]:
    """Published DPG-Bench overall scores (mPLUG-scored by their authors), with sources."""
    rows = [(model, [score], source) for model, (score, source) in DPG.items()]
    l1 = [("SDXL", [SDXL_L1[k] for k in ("global", "entity", "attribute", "relation", "other")],
           "TokenFlow paper (arXiv 2412.03069) Table 10")]
    return [PublishedTable("DPG-Bench (published; official mPLUG scorer, authors' own settings)", ["overall"], rows),
            PublishedTable("DPG-Bench L1 categories (published)", ["global", "entity", "attribute", "relation",
                                                                    "other"], l1)]
