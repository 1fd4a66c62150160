"""GEdit in reports: per task group SC / PQ / O (strict and parity, with the parity interval), status counts, the
judge's accounting, a grid of source | edited with each case's scores; published numbers with their sources
(docs/gedit.md, "Published numbers").

Comparisons are ``stratified``: the official score is the unweighted mean over the task groups of each group's
mean O, and the stratified paired bootstrap resamples cases within each group, so the overall it compares is
that very number (a paired mean of cases would weigh text_change's 99 cases 2.5 times tone_transfer's 40).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.api import reporting
from harness.api.reporting import Paired, PublishedTable, RunData, Section, esc, fmt, image_cell, md, md_row

#: GEdit-Bench-EN full set, GPT-4.1 judge: model -> (SC, PQ, O, source)
PUBLISHED_GPT: dict[str, tuple[float | None, float | None, float, str]] = {
    "Instruct-Pix2Pix": (3.58, 5.49, 3.68, "Step1X-Edit / BAGEL / UniWorld tables"),
    "MagicBrush": (4.68, 5.66, 4.52, "Step1X-Edit / BAGEL / UniWorld tables"),
    "AnyEdit": (3.18, 5.82, 3.21, "Step1X-Edit / BAGEL / UniWorld tables"),
    "OmniGen": (5.96, 5.89, 5.06, "OmniGen2 paper tables"),
    "Gemini 2.0 Flash": (6.73, 6.61, 6.32, "Step1X-Edit paper (arXiv 2504.17761)"),
    "FLUX.1 Kontext [dev]": (None, None, 6.00, "pairwise-Elo paper, Table 3 (SC/PQ not given)"),
    "OmniGen2": (7.16, 6.77, 6.41, "OmniGen2 paper"),
    "BAGEL": (7.36, 6.83, 6.52, "BAGEL paper"),
    "FLUX.1 Kontext [Pro]": (7.02, 7.60, 6.56, "Qwen-Image report (arXiv 2508.02324)"),
    "Step1X-Edit v1.0": (7.09, 6.76, 6.70, "Step1X-Edit paper / BAGEL paper"),
    "Step1X-Edit v1.1": (7.66, 7.35, 6.97, "Qwen-Image report (arXiv 2508.02324)"),
    "GPT-Image-1 [High]": (7.85, 7.62, 7.53, "Step1X-Edit paper / Qwen-Image report"),
    "Qwen-Image-Edit (Aug 2025)": (8.00, 7.86, 7.56, "Qwen-Image report (arXiv 2508.02324); CN 7.82/7.79/7.52"),
    "Nano-Banana": (7.396, 8.454, 7.291, "FireRed-Image-Edit README (yuhaoo00/FireRed-Image-Edit @ 0e47983)"),
    "Seedream 4.0": (8.143, 8.124, 7.701, "FireRed-Image-Edit README (yuhaoo00/FireRed-Image-Edit @ 0e47983)"),
    "FLUX.2 [dev]": (7.835, 8.064, 7.413, "FireRed-Image-Edit README (another table there gives O 7.24)"),
    "LongCat-Image-Edit": (8.128, 8.177, 7.748, "FireRed-Image-Edit README (yuhaoo00/FireRed-Image-Edit @ 0e47983)"),
    "Qwen-Image-Edit-2511": (8.297, 8.202, 7.877, "FireRed-Image-Edit README (yuhaoo00/FireRed-Image-Edit @ 0e47983)"),
}
#: the "GEdit-EN-Q" column of the DreamLite README (judge not stated there; the label suggests Qwen2.5-VL-72B)
PUBLISHED_QWEN: dict[str, float] = {
    "DreamLite": 6.88, "FLUX.1 Kontext": 6.79, "BAGEL": 7.20, "OmniGen2": 6.79, "LongCat-Image-Edit": 7.55,
    "DeepGen1.0": 7.54, "VIBE": 7.28, "EditMGT": 6.33,
}


def case_value(row: Mapping[str, Any], parity: bool) -> float | None:
    """A case's O: strict (scored cases), or the official one (cases it parsed without a guess)."""
    if not parity:
        return row.get("O") if row.get("status") == "scored" else None
    p = row.get("parity") or {}
    if not p.get("decided") or p.get("SC_guess") or p.get("PQ_guess"):
        return None
    from harness.benchmarks.gedit.parse import official_overall

    return official_overall(p["SC"], p["PQ"])


def paired_scores(run: RunData) -> Paired:
    """Per case (``task_type/language/key``): its group (and language, when both are scored) and its O in the
    headline mode; a case without a value is paired with nothing."""
    parity = run.summary.get("mode") == "parity"
    both = run.summary.get("language") == "both"
    items: dict[str, tuple[str, dict[str, float]]] = {}
    for r in run.results:
        value = case_value(r, parity)
        subset = f"{r['task_type']}/{r['language']}" if both else r["task_type"]
        items[r["case"]] = (subset, {} if value is None else {"O": value})
    return Paired(items)


def by_language(blocks: Mapping[str, Any] | None) -> list[tuple[str, Any]]:
    """Per-language blocks of a summary (JSON keeps no order): English, Chinese, then any other."""
    from harness.benchmarks.gedit.aggregate import languages_of

    blocks = blocks or {}
    return [(lang, blocks[lang]) for lang in languages_of([{"language": k} for k in blocks])]


def _head(run: RunData) -> list[tuple[str, Any]]:
    s = run.summary
    return by_language(s.get("parity") if s.get("mode") == "parity" else s.get("strict"))


def summary_rows(run: RunData) -> list[tuple[str, Any, Any, str]]:
    """``(group, O, -, counts)`` per language in the headline mode; the headline overall first."""
    s = run.summary
    rows = [("overall", s.get("overall"), None, f"mode {s.get('mode')}, language {s.get('headline_language')}")]
    both = len(_head(run)) > 1
    for lang, block in _head(run):
        if both:
            rows.append((f"overall ({lang})", block.get("O"), None, ""))
        for g, row in (block.get("groups") or {}).items():
            counts = (f"{row.get('scored')}/{row.get('cases')} scored" if "scored" in row
                      else f"{row.get('rows')} parsed")
            rows.append((f"{lang}/{g}" if both else g, row.get("O"), None, counts))
    return rows


def section(runs: Sequence[RunData], out_dir: Path, limit: int | None) -> Section:
    """One part per run: its tables, the judge line and its grid."""
    return reporting.per_run_section(runs, "GEdit-Bench", lambda run: run_section(run, out_dir, limit))


def _interval(pair: Any) -> str:
    return f"[{fmt(pair[0])}, {fmt(pair[1])}]" if pair else "–"


def run_section(run: RunData, out_dir: Path, limit: int | None) -> tuple[str, str]:
    """Per language: per group strict SC/PQ/O, parity O with its interval, counts; the judge; the grid."""
    from harness.benchmarks.gedit.aggregate import failed_attempts

    s = run.summary
    heads = ["group", "SC", "PQ", "O", "O parity", "parity interval", "cases", "scored", "parse_failed",
             "judge_failed"]
    html_parts, md_rows = [], []
    for lang, block in by_language(s.get("strict")):
        parity = (s.get("parity") or {}).get(lang) or {}
        md_rows += [f"### {md(lang)}", md_row(heads), "|---" * len(heads) + "|"]
        rows = []
        entries = [(g, row, (parity.get("groups") or {}).get(g) or {}) for g, row in block["groups"].items()]
        entries += [("overall", block, parity), ("intersection", block["intersection"], parity.get("intersection")
                                                 or {})]
        for name, row, prow in entries:
            cells = [fmt(row.get("SC")), fmt(row.get("PQ")), fmt(row.get("O")), fmt(prow.get("O")),
                     _interval((prow.get("interval") or {}).get("O")), row.get("cases"), row.get("scored"),
                     row.get("parse_failed"), row.get("judge_failed")]
            rows.append(f"<tr><th class=l>{esc(name)}</th>" + "".join(f"<td>{esc(fmt(c))}</td>" for c in cells)
                        + "</tr>")
            md_rows.append(md_row([name, *(fmt(c) for c in cells)]))
        html_parts.append(f"<h3>{esc(lang)}</h3><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in heads)
                          + "</tr>" + "".join(rows) + "</table>")
    judge = s.get("judge") or {}
    head = (f"<h2>GEdit-Bench: {esc(run.run_id)} ({esc(run.model_name)}), mode {esc(s.get('mode'))}, profile "
            f"{esc(s.get('profile'))}</h2><p>judge {esc(judge.get('requested_model'))} (returned: "
            f"{esc(', '.join(judge.get('returned_models') or []))}), requests {esc(judge.get('requests'))} (retries "
            f"{esc(judge.get('retries', 0))}{esc(failed_attempts(judge, '; failed: '))}), cost ≈ "
            f"${fmt(judge.get('cost_usd'), 2)}</p>")
    return head + "".join(html_parts) + grid(run, out_dir, limit), "\n".join(md_rows)


def _image(run: RunData, rel: str) -> Path:
    """A result's image: under the run's ``images/`` (a run), else under the folder itself (scored in place)."""
    inside_run = run.out / "images" / rel
    return inside_run if inside_run.is_file() or (run.out / "images").is_dir() else run.out / rel


def grid(run: RunData, out_dir: Path, limit: int | None) -> str:
    """Each case: source | edited, its SC / PQ / O and status (a missing image is shown as missing)."""
    blocks = []
    for r in run.results[:limit]:
        cells = [image_cell(_image(run, r[k]), out_dir, what) for k, what in (("source", "source"),
                                                                            ("image", "edited"))]
        status = r.get("status", "?") + (f": {r['reason']}" if r.get("reason") else "")
        blocks.append(f"<div class=prompt><p><b>{esc(r['case'])}</b> {esc(r.get('instruction', ''))}</p>"
                      f"{''.join(cells)}<p>SC {esc(fmt(r.get('SC')))} PQ {esc(fmt(r.get('PQ')))} O "
                      f"{esc(fmt(r.get('O')))} — {esc(status[:120])}</p></div>")
    return f"<div class=grid>{''.join(blocks)}</div>"


def published() -> list[PublishedTable]:
    return [PublishedTable("GEdit-Bench-EN full set, GPT-4.1 judge (published)", ["G_SC", "G_PQ", "G_O"],
                           [(m, [sc, pq, o], src) for m, (sc, pq, o, src) in PUBLISHED_GPT.items()]),
            PublishedTable("GEdit-EN-Q overall (published; judge not stated, likely Qwen2.5-VL-72B)", ["Q_O"],
                           [(m, [o], "DreamLite README") for m, o in PUBLISHED_QWEN.items()])]
