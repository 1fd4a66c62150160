"""Static plots of the store's history (matplotlib, Agg), as inline SVG strings."""

from __future__ import annotations

from typing import Any

from harness.api.reporting import svg_of


def history(frame: Any, metric: str | None = None, subset: str = "overall") -> str:
    """One line per (benchmark, model) over time, from the store's metrics joined with runs (``created_at``).

    ``metric`` None: each benchmark's own headline metric (the ``overall`` subset)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if frame is None or frame.empty:
        return ""
    rows = frame[frame["subset"] == subset]
    if metric is not None:
        rows = rows[rows["metric"] == metric]
    rows = rows.sort_values("created_at")
    if rows.empty:
        return ""
    fig, ax = plt.subplots(figsize=(9, 2.5))
    for (benchmark, model), group in rows.groupby(["benchmark", "model"]):
        ax.plot(range(len(group)), group["value"], marker="o", label=f"{benchmark}: {model}")
    ax.set_ylabel(f"{metric or 'overall'} ({subset})")
    ax.set_xlabel("run (oldest → newest)")
    ax.legend(fontsize=7)
    return svg_of(fig)
