"""Device sweeps in reports and comparisons: the sweep folder's own reader, latency tables, a latency-vs-steps plot.

A sweep folder (``harness device sweep`` or ``harness device profile``) has attempt records and no
``summary.json``; :class:`DeviceSweeps` claims such folders for ``harness report``/``compare``. Comparisons
are Mann-Whitney U on the raw measured iterations of each configuration with a ratio threshold (lower is
better), as docs/statistics.md describes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from harness.api.reporting import Paired, PublishedTable, Reportable, RunData, Section, esc, fmt, md, svg_of

#: what names one measured configuration (the pairing key of a comparison)
CONFIG_KEYS = ("variant", "runtime", "backend", "precision", "steps", "height", "width")

#: on-device latency claims -> (claim, source); published numbers, never ours
LATENCY: dict[str, tuple[str, str]] = {
    "DreamLite mobile, Xiaomi 14": ("< 1 s at 1024², 4 steps (W8A8, text embeddings precomputed)",
                                    "P: abstract; details secondary (press)"),
    "DreamLite, iPhone 17 Pro": ("~3 s at 1024², fully on device", "P: project page"),
    "SnapGen, iPhone 16 Pro Max": ("~1.4 s at 1024², 4 steps", "P: SnapGen paper"),
    "SnapGen++ 0.4B, iPhone 16 Pro Max": ("1.8 s at 1024², 4 steps", "P: project page"),
}


class DeviceSweeps(Reportable):
    """Reports and latency gating for device sweep folders."""

    name: ClassVar[str] = "device"
    higher_is_better: ClassVar[bool] = False
    threshold: ClassVar[float] = 1.10  # asv's ratio factor
    comparison: ClassVar[str] = "latency"
    alpha: ClassVar[float] = 0.002

    @classmethod
    def claims(cls, out: Path) -> bool:
        """A sweep folder: attempt records and no summary.json."""
        return not (out / "summary.json").is_file() and any((out / "records").glob("attempts-*.jsonl"))

    @classmethod
    def load_run(cls, out: Path) -> RunData:
        from harness.core.fsio import RecordLog

        records = sorted(RecordLog(out / "records", "attempts").read().values(),
                         key=lambda r: (r.get("order_idx", 0), r.get("attempt", 0)))
        variants = sorted({str(r.get("variant")) for r in records})
        manifest_path = out / "manifest.json"
        manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
        summary = {"benchmark": cls.name, "run_id": records[0].get("run_id", out.name) if records else out.name,
                   "label": "device latency", "model": {"adapter": ",".join(variants)},
                   "device": manifest.get("device"), "attempts": len(records),
                   "ok": sum(r.get("status") == "ok" for r in records)}
        return RunData(out, summary, records, manifest)

    @classmethod
    def identity(cls, run: RunData) -> dict[str, Any]:
        return {"benchmark": cls.name, "prompts": None, "label": "device latency", "scorer": None}

    @classmethod
    def paired_scores(cls, run: RunData) -> Paired:
        """End-to-end ms of every measured iteration of every ok attempt, per configuration."""
        items: dict[str, tuple[str, dict[str, float]]] = {}
        for r in run.results:
            if r.get("status") != "ok":
                continue
            label = "|".join(str(r.get(k)) for k in CONFIG_KEYS)
            values = items.setdefault(label, ("", {}))[1]
            for ms in r.get("e2e_ms") or []:
                values[str(len(values))] = float(ms)
        return Paired(items)

    @classmethod
    def report_section(cls, runs: Sequence[RunData], out_dir: Path, grid_limit: int | None) -> Section:
        parts = [_tables(run) for run in runs]
        return Section("".join(h for h, _ in parts),
                       "\n\n".join(f"## Device latency: {run.run_id}\n{m}" for run, (_, m) in zip(runs, parts,
                                                                                                 strict=True)))

    @classmethod
    def published(cls) -> list[PublishedTable]:
        return [PublishedTable("On-device latency claims", ["claim"],
                               [(m, [claim], src) for m, (claim, src) in LATENCY.items()])]


def _tables(run: RunData) -> tuple[str, str]:
    """Latency per variant/steps/resolution (median, p90, U-Net step, peak memory) and latency vs steps."""
    from harness.device.results import records_frame, summary_frame

    summary = summary_frame(records_frame(run.results)) if run.results else None
    failed = sum(r.get("status") != "ok" for r in run.results)
    note = f"{run.summary.get('ok', 0)} ok attempt(s), {failed} not ok (each listed in the records)"
    if summary is None or summary.empty:
        return f"<h2>Device latency: {esc(run.run_id)}</h2><p>no ok records; {esc(note)}</p>", md(note)
    cols = [c for c in ("variant", "runtime", "backend", "precision", "steps", "height", "width", "jobs", "iterations",
                        "e2e_ms_median", "e2e_ms_p90", "unet_step_ms_median", "peak_rss_mb", "throttled")
            if c in summary.columns]
    rows = summary[cols].to_dict("records")
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{esc(fmt(row[c], 1))}</td>" for c in cols) + "</tr>" for row in rows)
    markdown = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n" + "\n".join(
        "| " + " | ".join(md(fmt(row[c], 1)) for c in cols) + " |" for row in rows)
    device = json.dumps(run.summary.get("device") or {}, sort_keys=True)
    return (f"<h2>Device latency: {esc(run.run_id)}</h2><p>{esc(note)}; device <code>{esc(device)}</code></p>"
            f"<table><tr>{head}</tr>{body}</table>{latency_vs_steps(summary)}", markdown)


def latency_vs_steps(summary: Any) -> str:
    """Median end-to-end latency against steps, one line per (variant, resolution), as inline SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if summary is None or summary.empty or "e2e_ms_median" not in summary.columns:
        return ""
    fig, ax = plt.subplots(figsize=(6, 2.5))
    for (variant, height, width), group in summary.groupby(["variant", "height", "width"]):
        group = group.sort_values("steps")
        ax.plot(group["steps"], group["e2e_ms_median"], marker="o", label=f"{variant} {height}x{width}")
    ax.set_xlabel("steps")
    ax.set_ylabel("median e2e ms")
    ax.legend(fontsize=7)
    return svg_of(fig)
