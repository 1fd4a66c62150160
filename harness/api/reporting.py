"""The report side of the benchmark contract, and the small HTML/Markdown kit report sections are built with.

``harness report``, ``harness compare`` and ``harness nightly`` know no benchmark by name: they load each
run through its benchmark's :class:`Reportable` (found in the registry by the ``benchmark`` field of the
run's summary) and ask it for

* its per-item paired scores (:meth:`Reportable.paired_scores`) and how they are compared
  (``comparison``: ``"stratified"``, ``"paired-mean"`` or ``"latency"``), its direction
  (``higher_is_better``) and default regression ``threshold``;
* its report section over all runs of that benchmark (:meth:`Reportable.report_section`) and the
  published numbers to show beside ours (:meth:`Reportable.published`).

The statistics themselves live in ``harness.reports``; nothing here computes a test.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from harness.core.errors import HarnessError


@dataclass
class RunData:
    """One scored run as files: its folder, summary, per-sample results and manifest."""

    out: Path
    summary: dict[str, Any]
    results: list[dict[str, Any]] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def benchmark(self) -> str:
        return str(self.summary.get("benchmark", "?"))

    @property
    def run_id(self) -> str:
        return str(self.summary.get("run_id", self.out.name))

    @property
    def model_name(self) -> str:
        model = self.summary.get("model") or {}
        return str(model.get("adapter", "external")) if isinstance(model, dict) else str(model)


@dataclass
class Paired:
    """Per item (prompt, case, configuration): its subset (tag, edit type) and its values per sample."""

    items: dict[str, tuple[str, dict[str, float]]]


@dataclass
class Section:
    """A benchmark's part of a report: HTML, Markdown, and how many referenced images are missing."""

    html: str
    markdown: str
    missing_images: int = 0


def per_run_section(runs: Sequence[RunData], title: str,
                    run_part: Callable[[RunData], tuple[str, str]]) -> Section:
    """A section of one part per run, ``run_part(run) -> (html, markdown)``; the Markdown parts headed
    ``## TITLE: RUN_ID``."""
    parts = [run_part(run) for run in runs]
    return Section("".join(h for h, _ in parts),
                   "\n\n".join(f"## {title}: {md(run.run_id)}\n{m}" for run, (_, m) in zip(runs, parts, strict=True)))


@dataclass
class PublishedTable:
    """Published numbers (never ours) with their sources."""

    title: str
    columns: Sequence[str]
    rows: Sequence[tuple[str, Sequence[Any], str]]  # (model, values, source)


class Reportable:
    """What reports, comparisons and the nightly job need of a benchmark (or of device sweeps)."""

    name: ClassVar[str] = "benchmark"
    #: the direction of every metric of this benchmark
    higher_is_better: ClassVar[bool] = True
    #: default smallest change that counts as a regression, in the metric's units (a ratio for latency)
    threshold: ClassVar[float] = 0.01
    #: "stratified": overall = mean of subset means, paired bootstrap over items stratified by subset
    #: (McNemar's exact test folded in for 0/1 values); "paired-mean": paired bootstrap of the item means;
    #: "latency": Mann-Whitney U on raw samples per configuration with a ratio threshold
    comparison: ClassVar[str] = "stratified"
    #: significance level of the paired tests
    alpha: ClassVar[float] = 0.05

    @classmethod
    def claims(cls, out: Path) -> bool:
        """Whether ``out`` is a run of this kind that has no ``summary.json`` naming its benchmark (device sweeps)."""
        return False

    @classmethod
    def load_run(cls, out: Path) -> RunData:
        """Read a run folder: ``summary.json`` (an object), ``results.jsonl``, ``run.json``."""
        return RunData(out, read_json_object(out / "summary.json", f"rerun `harness merge {out}`"),
                       read_jsonl(out / "results.jsonl", f"rerun `harness merge {out}`"),
                       read_json_object(out / "run.json", "it is written by `harness run`", missing_ok=True))

    @classmethod
    def identity(cls, run: RunData) -> dict[str, Any]:
        """What must match for two runs to be compared: benchmark, item set and scorer."""
        prompts = run.summary.get("prompt_set") or {}
        return {"benchmark": run.benchmark, "prompts": prompts.get("sha256") if isinstance(prompts, dict) else None,
                "label": run.summary.get("label"), "scorer": run.summary.get("scorer_hash")}

    @classmethod
    def paired_scores(cls, run: RunData) -> Paired:
        """Per-item values of one run, paired with another run's by item and sample name."""
        raise HarnessError(f"{cls.name}: no paired scores; this benchmark cannot be compared")

    @classmethod
    def summary_rows(cls, run: RunData) -> list[tuple[str, Any, Any, str]]:
        """``(subset, value, ci95, counts)`` rows for the generic table; ``overall`` first."""
        s = run.summary
        rows = [("overall", s.get("overall"), s.get("overall_ci95"), "")]
        for key in ("tags", "types", "subsets"):
            for name, row in (s.get(key) or {}).items():
                if isinstance(row, dict):
                    rows.append((name, row.get("score", row.get("mean")), row.get("ci95"), ""))
        return rows

    @classmethod
    def report_section(cls, runs: Sequence[RunData], out_dir: Path, grid_limit: int | None) -> Section:
        """This benchmark's part of a report over ``runs`` (all of this benchmark)."""
        return Section(*summary_table(cls.name, runs, cls.summary_rows))

    @classmethod
    def published(cls) -> list[PublishedTable]:
        """Published numbers to show beside ours (with sources)."""
        return []


# -- reading run files ---------------------------------------------------------------------------------------
def read_json_object(path: Path, fix: str, *, missing_ok: bool = False) -> dict[str, Any]:
    """A JSON file that must hold an object; anything else is a one-line error naming the file."""
    if missing_ok and not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HarnessError(f"{path}: missing; {fix}") from None
    except UnicodeDecodeError:
        raise HarnessError(f"{path}: not UTF-8 text; {fix}") from None
    except json.JSONDecodeError as exc:
        raise HarnessError(f"{path}: not valid JSON ({exc.msg}); {fix}") from None
    if not isinstance(data, dict):
        raise HarnessError(f"{path}: expected a JSON object, got {type(data).__name__}; {fix}")
    return data


def read_jsonl(path: Path, fix: str) -> list[dict[str, Any]]:
    """The objects of a JSON-lines file (missing file: none); a bad line is a one-line error."""
    if not path.is_file():
        return []
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise HarnessError(f"{path}: not UTF-8 text; {fix}") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise HarnessError(f"{path} line {n}: not valid JSON; {fix}") from None
        if not isinstance(row, dict):
            raise HarnessError(f"{path} line {n}: expected a JSON object; {fix}")
        rows.append(row)
    return rows


# -- HTML and Markdown helpers -------------------------------------------------------------------------------
def esc(value: Any) -> str:
    """HTML-escaped text."""
    return html.escape(str(value))


def md(value: Any) -> str:
    """One Markdown table cell (or heading) from any value: ``&``, ``<``, ``>``, ``|``, backticks and line breaks
    escaped, so a name from a user's file stays inside its cell and never becomes HTML."""
    text = value if isinstance(value, str) else fmt(value)
    text = html.escape(text, quote=False).replace("|", "\\|").replace("`", "&#96;")
    return "<br>".join(text.splitlines()) if text else text


def md_row(cells: Sequence[Any]) -> str:
    """A Markdown table row; every cell through :func:`md`."""
    return "| " + " | ".join(md(c) for c in cells) + " |"


def fmt(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals; None as an en dash; anything else as text."""
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return "–" if value is None else str(value)


def ci_text(ci: Any) -> str:
    """``[lo, hi]`` or nothing."""
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def image_cell(path: Path | None, out_dir: Path, caption: str, css: str = "", title: str = "") -> str:
    """One thumbnail linked by relative path (lazy-loaded); a 'missing' box for a missing file and a 'too large'
    box for an image over the pixel budget (checked from its header: the browser would decode it)."""
    from harness.core.images import within_budget

    if path is None or not path.is_file():
        shown = "<div class=missing>missing</div>"
    elif not within_budget(path):
        shown = "<div class=missing title='over the pixel budget (--max-pixels)'>too large</div>"
    else:
        rel = os.path.relpath(path.resolve(), out_dir.resolve())
        shown = f"<img loading=lazy src='{esc(rel)}' alt='{esc(path.name)}' title='{esc(title)}'>"
    return f"<div class='cell {css}'>{shown}{esc(caption)}</div>"


def summary_table(title: str, runs: Sequence[RunData], rows_of: Any) -> tuple[str, str]:
    """A subsets × runs table (HTML and Markdown) from each run's ``(subset, value, ci, counts)`` rows."""
    per_run = [{row[0]: row for row in rows_of(run)} for run in runs]
    subsets: list[str] = []
    for rows in per_run:
        subsets += [s for s in rows if s not in subsets]
    head = "".join(f"<th>{esc(r.run_id)}<br>{esc(r.model_name)}</th>" for r in runs)
    body, md_rows = [], []
    for subset in subsets:
        cells, md_cells = [], []
        for rows in per_run:
            row = rows.get(subset)
            if row is None:
                cells.append("<td>–</td>")
                md_cells.append("–")
                continue
            _, value, ci, counts = row
            count_html = f"<br><small>{esc(counts)}</small>" if counts else ""
            cells.append(f"<td>{fmt(value)}{ci_text(ci)}{count_html}</td>")
            md_cells.append(md(fmt(value)))
        body.append(f"<tr><th class=l>{esc(subset)}</th>{''.join(cells)}</tr>")
        md_rows.append(f"| {md(subset)} | " + " | ".join(md_cells) + " |")
    html_table = f"<table><tr><th class=l>{esc(title)}</th>{head}</tr>{''.join(body)}</table>"
    md_head = ["| " + md(title) + " | " + " | ".join(md(f"{r.run_id} ({r.model_name})") for r in runs) + " |",
               "|---|" + "---|" * len(runs)]
    return html_table, "\n".join(md_head + md_rows)


def bars_svg(runs: Sequence[RunData], subsets: Sequence[str], rows_of: Any, *, ylabel: str = "score") -> str:
    """Grouped bars per subset for each run, with 95% intervals where the rows have them (inline SVG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3))
    width = 0.8 / max(len(runs), 1)
    for j, run in enumerate(runs):
        rows = {row[0]: row for row in rows_of(run)}
        values, lo, hi = [], [], []
        for subset in subsets:
            _, v, ci, _ = rows.get(subset, (subset, None, None, ""))
            v = math.nan if v is None else float(v)
            values.append(v)
            lo.append(v - ci[0] if ci and not math.isnan(v) else 0.0)
            hi.append(ci[1] - v if ci and not math.isnan(v) else 0.0)
        xs = [i + (j - (len(runs) - 1) / 2) * width for i in range(len(subsets))]
        ax.bar(xs, values, width, yerr=[lo, hi], capsize=2, label=f"{run.run_id} ({run.model_name})")
    ax.set_xticks(range(len(subsets)))
    ax.set_xticklabels(subsets, rotation=20, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    return svg_of(fig)


def svg_of(fig: Any) -> str:
    """A matplotlib figure as an inline ``<svg>`` element (the figure is closed)."""
    import io

    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]
