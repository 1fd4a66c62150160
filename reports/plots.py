"""Static plots (matplotlib, Agg) returned as inline SVG strings: per-tag bars with CIs, metric history."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from reports.published import GENEVAL_COLUMNS
from reports.runs import RunData


def _svg(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def geneval_bars(runs: Sequence[RunData]) -> str:
    """Per-tag scores of each run with their 95% bootstrap intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tags = list(GENEVAL_COLUMNS)
    fig, ax = plt.subplots(figsize=(9, 3))
    width = 0.8 / max(len(runs), 1)
    for j, run in enumerate(runs):
        values, lo, hi = [], [], []
        for tag in tags:
            if tag == "overall":
                v, ci = run.summary.get("overall"), run.summary.get("overall_ci95")
            else:
                row = (run.summary.get("tags") or {}).get(tag) or {}
                v, ci = row.get("score"), row.get("ci95")
            v = 0.0 if v is None else v
            values.append(v)
            lo.append(v - ci[0] if ci else 0)
            hi.append(ci[1] - v if ci else 0)
        xs = [i + j * width for i in range(len(tags))]
        ax.bar(xs, values, width, yerr=[lo, hi], capsize=2, label=f"{run.run_id} ({run.model_name})")
    ax.set_xticks([i + width * (len(runs) - 1) / 2 for i in range(len(tags))], tags, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score")
    ax.legend(fontsize=7)
    return _svg(fig)


def history(frame: Any, metric: str = "geneval", subset: str = "overall") -> str:
    """One line per model over time, from the store's metrics joined with runs (``created_at``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = frame[(frame["metric"] == metric) & (frame["subset"] == subset)].sort_values("created_at")
    if rows.empty:
        return ""
    fig, ax = plt.subplots(figsize=(9, 2.5))
    for model, group in rows.groupby("model"):
        ax.plot(range(len(group)), group["value"], marker="o", label=str(model))
    ax.set_ylabel(f"{metric} {subset}")
    ax.set_xlabel("run (oldest → newest)")
    ax.legend(fontsize=7)
    return _svg(fig)


def latency_vs_steps(summary: Any) -> str:
    """Median end-to-end latency against steps, one line per (variant, resolution)."""
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
    return _svg(fig)
