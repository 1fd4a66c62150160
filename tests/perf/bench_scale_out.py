"""Scale-out figures: 2 processes vs 1 on a generation-bound tiny run.

1. ``harness run geneval --model tiny --no-score`` (24 demo prompts x 4 images, 128², 32 steps: about
   100 s of generation against about 10 s of start-up and model load per process, so the run is
   generation-bound) with 1 process (1 torch thread) and with ``torchrun --nproc_per_node 2`` (1 thread
   per rank); wall times, speed-up (target >= 1.6x on 2 cores) and byte-identical images.
   ``--all`` adds 1 process with 2 threads, ``accelerate launch`` and two plain ``--shard i/2``
   processes followed by ``harness merge``.

(The merge of 2,212 records is a pytest-benchmark micro-benchmark: tests/perf/micro.)

    python tests/perf/bench_scale_out.py [--skip-speedup] [--all] [--steps N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_args(steps: int) -> list[str]:
    return ["run", "geneval", "--model", "tiny", "--model-args", f"resolution=128,steps={steps}",
            "--prompts", "demo", "--no-score", "--no-progress"]


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def speedup(root: Path, steps: int, every: bool) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HARNESS_CACHE": str(root / "cache"), "OMP_NUM_THREADS": "1"}
    run = run_args(steps)
    harness = [sys.executable, "-m", "harness"]
    bindir = Path(sys.executable).parent
    timed([*harness, *run, "--limit", "1", "--out", "warm"], root, env)  # build tiny once
    result: dict = {"workload": " ".join(run)}
    one = timed([*harness, *run, "--threads", "1", "--out", "one"], root, env)
    two = timed([str(bindir / "torchrun"), "--nproc_per_node", "2", "-m", "harness", *run, "--threads", "1",
                 "--out", "two"], root, env)
    result |= {"one_process_s": round(one, 1), "two_processes_torchrun_s": round(two, 1),
               "speedup": round(one / two, 2), "identical_images": same_images(root / "one", root / "two")}
    if every:
        result["one_process_2_threads_s"] = round(timed([*harness, *run, "--threads", "2", "--out", "one2"], root,
                                                        env), 1)
        acc = timed([str(bindir / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "-m", "harness",
                     *run, "--threads", "1", "--out", "acc"], root, env)
        start = time.perf_counter()
        procs = [subprocess.Popen([*harness, *run, "--threads", "1", "--shard", f"{i}/2", "--out", "shards"],
                                  cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for i in range(2)]
        if any(proc.wait() for proc in procs):
            raise RuntimeError("a --shard process failed")
        timed([*harness, "merge", "shards"], root, env)
        shards = time.perf_counter() - start
        result |= {"two_processes_accelerate_s": round(acc, 1), "speedup_accelerate": round(one / acc, 2),
                   "two_shard_processes_and_merge_s": round(shards, 1), "speedup_shards": round(one / shards, 2)}
        result["identical_images"] &= same_images(root / "one", root / "acc") and same_images(root / "one",
                                                                                               root / "shards")
    return result


def same_images(a: Path, b: Path) -> bool:
    """Every PNG under ``a/images`` exists under ``b`` with the same bytes."""
    pngs = list((a / "images").rglob("*.png"))
    return bool(pngs) and all((b / p.relative_to(a)).is_file() and (b / p.relative_to(a)).read_bytes() ==
                              p.read_bytes() for p in pngs)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-speedup", action="store_true")
    parser.add_argument("--all", action="store_true", help="also 2 threads, accelerate launch and --shard runs")
    parser.add_argument("--steps", type=int, default=32, help="sampling steps of the tiny run (default 32)")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        result = {"benchmark": "scale_out"}
        if not opts.skip_speedup:
            result.update(speedup(root, opts.steps, opts.all))
    print(json.dumps(result))
    ok = result["merge_s"] < 5 and (opts.skip_speedup or (result["speedup"] >= 1.6 and result["identical_images"]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
