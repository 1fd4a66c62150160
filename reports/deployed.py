"""Deployed vs reference: runs measured on a device next to a reference run of the same work, from files only.

Generic over benchmarks and models. A model may record with each image what it measured
(``image.info["harness"]``, kept in the run's generation records): ``seconds`` (that image's latency),
``stage_ms``, ``peak_rss_kb``, ``battery_before``/``battery_after``/``charging``, ``throttled`` and
``device`` (where it ran: a run whose records name a device is a *deployed* run). Every other run's records
hold the engine's own per-image wall time in ``seconds``.

For each benchmark with a deployed run, the section shows

* latency per run: images, median and p90 seconds per image, peak memory, battery drop (an energy proxy,
  meaningless while charging), how many images came from throttled batches, where the run ran;
* each deployed run next to its reference, the last run on the command line that did the same work (same
  benchmark identity, items, samples and seeds) without a device: the benchmark's summary rows with their
  intervals side by side, and the paired comparison over items (the benchmark's own test; the images differ
  between runtimes, so the pairing is by prompt or case, never by pixels);
* quality vs latency: the overall score against the median seconds per image of every run, with the Pareto
  front (no other run is both faster and better);
* image pairs: each unit's image in the deployed run next to the reference's (same item, sample and seed).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.api.reporting import RunData, Section, ci_text, esc, fmt, image_cell, md, md_row, svg_of
from harness.core.errors import HarnessError
from harness.core.fsio import RecordLog
from harness.core.paths import inside, safe_relpath

#: how many image pairs a deployed run shows without ``--grid-limit``
DEFAULT_PAIRS = 12


def generation_records(run: RunData) -> list[dict[str, Any]]:
    """The run's generation records, in (item, sample) order."""
    done = RecordLog(run.out / "records", "generate").read().values()
    return sorted(done, key=lambda r: (str(r.get("item_id")), int(r.get("sample_index") or 0)))


def _unit(record: dict[str, Any]) -> tuple[str, int, Any]:
    return str(record.get("item_id")), int(record.get("sample_index") or 0), record.get("seed")


def p90(values: Sequence[float]) -> float | None:
    """The 90th percentile (linear interpolation), None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = 0.9 * (len(s) - 1)
    lo = int(k)
    return s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (k - lo)


def latency(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Latency, peak memory, battery drop and throttling of a run's records."""
    seconds = [float(r["seconds"]) for r in records if isinstance(r.get("seconds"), (int, float))]
    peaks = [r["peak_rss_kb"] for r in records if isinstance(r.get("peak_rss_kb"), (int, float))]
    before = [r["battery_before"] for r in records if isinstance(r.get("battery_before"), (int, float))]
    after = [r["battery_after"] for r in records if isinstance(r.get("battery_after"), (int, float))]
    devices = sorted({str(r["device"]) for r in records if r.get("device")})
    return {"images": len(records), "timed": len(seconds),
            "median_s": statistics.median(seconds) if seconds else None, "p90_s": p90(seconds),
            "peak_memory_mb": max(peaks) / 1024 if peaks else None,
            "battery_drop": max(before) - min(after) if before and after else None,
            "charging": any(r.get("charging") is True for r in records),
            "throttled": sum(r.get("throttled") is True for r in records),
            "device": ", ".join(devices) or "host (the engine's wall time per image)", "deployed": bool(devices)}


def same_work(a: RunData, b: RunData, units_a: set, units_b: set) -> bool:
    """Same benchmark identity (items, scorer) and the same units (item, sample, seed)."""
    from harness.reports.regression import reportable

    if a.benchmark != b.benchmark or not units_a or units_a != units_b:
        return False
    cls = reportable(a.benchmark)
    return cls.identity(a) == cls.identity(b)


def section(runs: Sequence[RunData], out_dir: Path, grid_limit: int | None) -> Section | None:
    """The deployed-vs-reference part of a report, or None when no run was measured on a device."""
    parts, markdown, missing = [], [], 0
    by_benchmark: dict[str, list[RunData]] = {}
    for run in runs:
        by_benchmark.setdefault(run.benchmark, []).append(run)
    for name, group in by_benchmark.items():
        records = {id(run): generation_records(run) for run in group}
        stats = {id(run): latency(records[id(run)]) for run in group}
        deployed = [run for run in group if stats[id(run)]["deployed"]]
        if not deployed:
            continue
        units = {id(run): {_unit(r) for r in records[id(run)]} for run in group}
        html_table, md_table = latency_table(group, stats)
        parts.append(f"<h2>Deployed vs reference: {esc(name)}</h2>{html_table}{pareto_svg(group, stats)}")
        markdown += [f"## Deployed vs reference: {md(name)}", md_table, ""]
        for run in deployed:
            refs = [r for r in group if not stats[id(r)]["deployed"]
                    and same_work(run, r, units[id(run)], units[id(r)])]
            if not refs:
                parts.append(f"<p>{esc(run.run_id)}: no reference run of the same items, samples, seeds and scorer "
                             "among the runs given (pass the host run of the same prompts and seeds)</p>")
                continue
            ref = refs[-1]
            table, md_side = side_by_side(run, ref)
            grid, lost = image_pairs(run, ref, records[id(run)], records[id(ref)], out_dir, grid_limit)
            missing += lost
            parts.append(f"<h3>{esc(run.run_id)} ({esc(stats[id(run)]['device'])}) vs reference {esc(ref.run_id)} "
                         f"({esc(ref.model_name)})</h3>{table}{grid}")
            markdown += [f"### {md(run.run_id)} vs reference {md(ref.run_id)}", md_side, ""]
    if not parts:
        return None
    return Section("".join(parts), "\n".join(markdown), missing)


def latency_table(group: Sequence[RunData], stats: dict[int, dict[str, Any]]) -> tuple[str, str]:
    """One row per run: where, images, median/p90 seconds per image, peak memory, battery drop, throttled."""
    head = ["run", "model", "where", "images", "median s/img", "p90 s/img", "peak memory MB", "battery drop %",
            "throttled images"]
    rows = []
    for run in group:
        s = stats[id(run)]
        drop = fmt(s["battery_drop"], 0) + (" (charging)" if s["charging"] and s["battery_drop"] is not None else "")
        rows.append([run.run_id, run.model_name, s["device"], f"{s['timed']}/{s['images']}", fmt(s["median_s"]),
                     fmt(s["p90_s"]), fmt(s["peak_memory_mb"], 0), drop, s["throttled"]])
    html_rows = "".join("<tr>" + "".join(f"<td class=l>{esc(c)}</td>" if i < 3 else f"<td>{esc(c)}</td>"
                                         for i, c in enumerate(row)) + "</tr>" for row in rows)
    html = "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + f"</tr>{html_rows}</table>"
    return html, "\n".join([md_row(head), "|" + "---|" * len(head), *(md_row(row) for row in rows)])


def side_by_side(run: RunData, ref: RunData) -> tuple[str, str]:
    """The benchmark's summary rows of both runs and the paired comparison of each (reference = base)."""
    from harness.reports.regression import compare_runs, reportable

    cls = reportable(run.benchmark)
    try:
        comparisons, notes = compare_runs(ref, run)
    except HarnessError as exc:
        comparisons, notes = [], [str(exc)]
    by_subset = {c.metric.removeprefix(f"{cls.name}_"): c for c in comparisons}
    mine, theirs = ({row[0]: row for row in cls.summary_rows(r)} for r in (run, ref))
    head = ["subset", f"deployed {run.run_id}", f"reference {ref.run_id}", "Δ", "95% CI", "p", "mark"]
    rows = []
    for subset in [*mine, *(s for s in theirs if s not in mine)]:
        cells = []
        for table in (mine, theirs):
            row = table.get(subset)
            cells.append("–" if row is None else f"{fmt(row[1])}{ci_text(row[2])}" + (f" ({row[3]})" if row[3] else ""))
        c = by_subset.get(subset)
        cells += ["–", "–", "–", ""] if c is None else [
            f"{c.delta:+.3f}", f"[{c.ci95[0]:+.3f}, {c.ci95[1]:+.3f}]" if c.ci95 else "–", fmt(c.p_value, 4),
            f"{c.mark} {c.verdict}"]
        rows.append([subset, *cells])
    note = "".join(f"<p><small>{esc(n)}</small></p>" for n in notes)
    html = ("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td class=l>{esc(c)}</td>" if i == 0 else f"<td>{esc(c)}</td>"
                                       for i, c in enumerate(row)) + "</tr>" for row in rows)
            + f"</table>{note}")
    return html, "\n".join([md_row(head), "|" + "---|" * len(head), *(md_row(row) for row in rows), *notes])


def _image(run: RunData, record: dict[str, Any] | None) -> Path | None:
    if record is None:
        return None
    where = str(run.out / "records")
    return inside(run.out, safe_relpath(record.get("image"), what="image", where=where), what="image")


def image_pairs(run: RunData, ref: RunData, records: Sequence[dict[str, Any]], ref_records: Sequence[dict[str, Any]],
                out_dir: Path, limit: int | None) -> tuple[str, int]:
    """Deployed | reference thumbnails of the same units; returns (html, number of missing images)."""
    theirs = {_unit(r): r for r in ref_records}
    blocks, missing = [], 0
    for record in records[:limit or DEFAULT_PAIRS]:
        unit = _unit(record)
        cells = []
        for label, path in (("deployed", _image(run, record)), ("reference", _image(ref, theirs.get(unit)))):
            missing += path is None or not path.is_file()
            cells.append(image_cell(path, out_dir, label))
        caption = f"{unit[0]} #{unit[1]} seed {unit[2]}"
        blocks.append(f"<div class=prompt style='width:220px'><p>{esc(caption)}</p>{''.join(cells)}</div>")
    return f"<div class=grid>{''.join(blocks)}</div>", missing


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x = faster, higher y = better), by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _labels(group: Sequence[RunData]) -> list[str]:
    """Each run's model name and the settings in which the runs differ (variant, steps, precision, ...)."""
    models = [r.summary.get("model") if isinstance(r.summary.get("model"), dict) else {} for r in group]
    keys = sorted({k for m in models for k in m if k not in ("class", "adapter", "generate", "files")})
    differ = [k for k in keys if len({repr(m.get(k)) for m in models}) > 1]
    return [" ".join([run.model_name, *(f"{k}={m[k]}" for k in differ if m.get(k) is not None)])
            for run, m in zip(group, models, strict=True)]


def pareto_svg(group: Sequence[RunData], stats: dict[int, dict[str, Any]]) -> str:
    """Overall score against median seconds per image, every run a point, the Pareto front drawn (inline SVG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = _labels(group)
    shown = [(i, run) for i, run in enumerate(group)
             if isinstance(run.summary.get("overall"), (int, float)) and stats[id(run)]["median_s"] is not None]
    if len(shown) < 2:
        return ""
    points = [(float(stats[id(run)]["median_s"]), float(run.summary["overall"])) for _, run in shown]
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for (i, run), (x, y) in zip(shown, points, strict=True):
        ax.scatter([x], [y], marker="o" if stats[id(run)]["deployed"] else "s",
                   color="tab:blue" if stats[id(run)]["deployed"] else "tab:gray")
        ax.annotate(labels[i], (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    front = pareto_front(points)
    ax.plot([points[i][0] for i in front], [points[i][1] for i in front], color="tab:red", lw=1, ls="--",
            label="Pareto front")
    ax.set_xlabel("median seconds per image (deployed: on the device; squares: the host's wall time)")
    ax.set_ylabel("overall")
    ax.legend(fontsize=7)
    return svg_of(fig)
