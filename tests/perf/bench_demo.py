"""The README's main job, measured: wall time and peak RSS of the demo GenEval run, plus kill -9 resume.

1. A fresh cache and folder (tiny models are built on the way), the exact demo command as a child process;
   wall time and the child's peak RSS (``ru_maxrss``). Targets: < 120 s, < 3 GB.
2. The same run killed with SIGKILL after about half of its images, then started again with the same
   command: its ``summary.json`` must equal the uninterrupted run's byte for byte.

    python tests/perf/bench_demo.py
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEMO = ["run", "geneval", "--model", "tiny", "--prompts", "demo", "--detector", "tiny", "--clip", "tiny",
        "--threads", "1", "--no-progress"]


def run(cwd: Path, env: dict[str, str], *extra: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", *DEMO, *extra], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HARNESS_CACHE": str(root / "c"),
               "HARNESS_STORE": str(root / "h.db")}
        wall = run(root, env, "--out", "full")
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

        proc = subprocess.Popen([sys.executable, "-m", "harness", *DEMO, "--out", "killed"], cwd=root, env=env,
                                stdout=subprocess.DEVNULL)
        records = root / "killed" / "records"
        while proc.poll() is None:
            n = sum(len(p.read_text().splitlines()) for p in records.glob("generate-*")) if records.exists() else 0
            if n >= 48:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        proc.wait()
        killed_at = sum(len(p.read_text().splitlines()) for p in records.glob("generate-*"))
        resume_wall = run(root, env, "--out", "killed")
        same = (root / "killed" / "summary.json").read_bytes() == (root / "full" / "summary.json").read_bytes()
        result = {"benchmark": "demo_main_job", "wall_s": round(wall, 1), "peak_rss_mb": round(peak_mb),
                  "killed_after_images": killed_at, "resume_wall_s": round(resume_wall, 1),
                  "resumed_summary_identical": same}
    print(json.dumps(result))
    return 0 if same and wall < 120 and peak_mb < 3072 else 1


if __name__ == "__main__":
    sys.exit(main())
