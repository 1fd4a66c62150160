"""Report rendering at full scale: 2 synthetic runs × 553 prompts × 4 images (records only, images missing).

Target: ≤ 10 s for `harness report` on them (tables, per-tag plot, full image grids). Prints JSON.

    python tests/perf/bench_report.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))  # synthetic_runs

from synthetic_runs import write_synthetic_run

RATES = {"single_object": 0.95, "two_object": 0.7, "counting": 0.6, "colors": 0.8, "position": 0.25,
         "color_attr": 0.45}


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        a = write_synthetic_run(root / "a", rates=RATES, seed=1)
        b = write_synthetic_run(root / "b", rates=RATES, seed=2)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "harness", "report", str(a), str(b), "--out", str(root / "rep"),
                        "--store", str(root / "h.db")], check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        size = (root / "rep" / "index.html").stat().st_size
    result = {"benchmark": "report_render", "runs": 2, "images_per_run": 2212, "seconds": round(seconds, 2),
              "html_mb": round(size / 2**20, 1)}
    print(json.dumps(result))
    return 0 if seconds <= 10 else 1


if __name__ == "__main__":
    sys.exit(main())
