"""Device sweeps in reports and comparisons: latency table (median, p90, peak memory) and Mann-Whitney gating."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

from harness.core.fsio import RecordLog
from harness.reports.html import build_report
from harness.reports.regression import compare_runs
from harness.reports.runs import load_run


def write_sweep(out: Path, *, scale: float, seed: int, failed: int = 0) -> Path:
    rng = random.Random(seed)
    records = []
    n = 0
    for steps in (1, 2, 4):
        for rep in range(3):
            e2e = [scale * (150 * steps + 300) + rng.gauss(0, 5) for _ in range(10)]
            records.append({"key": f"job{steps}#{rep}", "job_id": f"job{steps}-{rep}", "attempt": 1, "order_idx": n,
                            "run_id": f"device-{out.name}", "status": "ok", "variant": "dreamlite-mobile-w8a8",
                            "runtime": "mnn", "backend": "opencl", "precision": "int8", "steps": steps,
                            "height": 1024, "width": 1024, "repeat_idx": rep, "e2e_ms": e2e,
                            "e2e_ms_median": sorted(e2e)[5], "unet_step_ms": [[150 * scale] * steps for _ in e2e],
                            "unet_total_ms": [150 * scale * steps for _ in e2e], "max_rss_kb": 2_000_000 + steps})
            n += 1
    for i in range(failed):
        records.append({"key": f"bad#{i}", "job_id": f"bad{i}", "attempt": 1, "order_idx": n + i,
                        "run_id": f"device-{out.name}", "status": "timeout", "variant": "dreamlite-mobile-w8a8",
                        "steps": 8, "height": 1024, "width": 1024})
    with RecordLog(out / "records", "attempts", token="t") as log:
        log.append(records)
    return out


def test_device_sweep_report_and_latency_gating(tmp_path):
    base = write_sweep(tmp_path / "base", scale=1.0, seed=1, failed=1)
    same = write_sweep(tmp_path / "same", scale=1.0, seed=2)
    slower = write_sweep(tmp_path / "slower", scale=1.15, seed=3)
    comps, _ = compare_runs(load_run(str(base)), load_run(str(same)))
    assert len(comps) == 3 and all(c.verdict != "regression" for c in comps)
    comps, _ = compare_runs(load_run(str(base)), load_run(str(slower)))
    assert all(c.verdict == "regression" for c in comps) and all(c.new / c.base > 1.1 for c in comps)

    html_path, md_path = build_report([load_run(str(base)), load_run(str(slower))], tmp_path / "rep")
    page = html_path.read_text()
    assert "Device latency: device-base" in page and "e2e_ms_p90" in page and "peak_rss_mb" in page
    assert "1 not ok" in page and "<svg" in page
    md = md_path.read_text()
    assert "| dreamlite-mobile-w8a8 |" in md

    out = subprocess.run([sys.executable, "-m", "harness", "compare", str(base), str(slower), "--fail-on-regression"],
                         capture_output=True, text=True)
    assert out.returncode == 1 and "e2e_ms dreamlite-mobile-w8a8|mnn|opencl|int8|4|1024|1024" in out.stdout
