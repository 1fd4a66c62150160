"""Single-model tools that print summary statistics only: TFLite ``benchmark_model``, ORT ``onnxruntime_perf_test``.

They have no per-iteration list, so the run's ``summary`` carries their own statistics (``e2e_ms_avg``,
``e2e_ms_median``, percentiles, peak memory) and ``iterations`` stays empty.
"""

from __future__ import annotations

import re
from typing import ClassVar

from harness.device.runners.base import ParsedRun, TextRunner

TFL_TIMINGS = re.compile(r"Init: ([\d.]+), First inference: ([\d.]+), Warmup \(avg\): ([\d.eE+-]+|nan), "
                         r"Inference \(avg\): ([\d.]+)")
TFL_STATS = re.compile(r"count=(\d+) first=(\d+) curr=(\d+) min=(\d+) max=(\d+) avg=([\d.]+) std=(\d+)"
                       r"(?: p5=(\d+) median=(\d+) p95=(\d+))?")
TFL_DELTA = re.compile(r"Memory footprint delta from the start of the tool \(MB\): init=([\d.]+) overall=([\d.]+)")
TFL_PEAK = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring: ([\d.]+)")


def parse_tflite(text: str) -> ParsedRun:
    """``benchmark_model`` output; the last ``count=`` line is the measured runs (the first is warm-up)."""
    run = ParsedRun()
    s = run.summary
    if m := TFL_TIMINGS.search(text):
        run.matched_lines += 1
        run.load_ms = float(m.group(1)) / 1000
        s["first_e2e_ms"] = float(m.group(2)) / 1000
        s["e2e_ms_avg"] = float(m.group(4)) / 1000
    stats = TFL_STATS.findall(text)
    if stats:
        run.matched_lines += 1
        count, _first, _curr, mn, mx, avg, std, _p5, median, p95 = stats[-1]
        s.update(iterations=int(count), e2e_ms_min=int(mn) / 1000, e2e_ms_max=int(mx) / 1000,
                 e2e_ms_avg=float(avg) / 1000, e2e_ms_std=int(std) / 1000)
        if median:
            s.update(e2e_ms_median=int(median) / 1000, e2e_ms_p95=int(p95) / 1000)
    if m := TFL_DELTA.search(text):
        run.matched_lines += 1
        s["rss_delta_init_mb"], s["rss_delta_overall_mb"] = float(m.group(1)), float(m.group(2))
    if m := TFL_PEAK.search(text):
        run.matched_lines += 1
        s["tool_peak_mem_mb"] = float(m.group(1))
    return run


ORT_PATTERNS = {
    "session_creation_s": re.compile(r"Session creation time cost: ([\d.]+) s"),
    "first_e2e_ms": re.compile(r"First inference time cost: ([\d.]+) ms"),
    "e2e_ms_avg": re.compile(r"Average inference time cost(?: total)?: ([\d.]+) ms"),
    "peak_working_set_bytes": re.compile(r"Peak working set size: (\d+) bytes"),
    "iterations": re.compile(r"Total inference requests: (\d+)"),
}
ORT_LATENCY = re.compile(r"(Min|Max|P50|P90|P95|P99|P999) Latency: ([\d.eE-]+) s")


def parse_ort(text: str) -> ParsedRun:
    """``onnxruntime_perf_test`` output (latencies in seconds become ms)."""
    run = ParsedRun()
    for key, pat in ORT_PATTERNS.items():
        if m := pat.search(text):
            run.matched_lines += 1
            run.summary[key] = float(m.group(1)) if "." in m.group(1) else int(m.group(1))
    for name, value in ORT_LATENCY.findall(text):
        run.matched_lines += 1
        key = {"P50": "e2e_ms_median"}.get(name, f"e2e_ms_{name.lower()}")
        run.summary[key] = float(value) * 1000
    if "session_creation_s" in run.summary:
        run.load_ms = run.summary["session_creation_s"] * 1000
    return run


class TfliteRunner(TextRunner):
    """TFLite ``benchmark_model`` (binary)."""

    name: ClassVar[str] = "tflite"

    marks_warmup = False
    parse_text = staticmethod(parse_tflite)


class OrtRunner(TextRunner):
    """ONNX Runtime ``onnxruntime_perf_test``."""

    name: ClassVar[str] = "ort"

    marks_warmup = False
    parse_text = staticmethod(parse_ort)
