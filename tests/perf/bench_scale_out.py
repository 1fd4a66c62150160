"""Scale-out figures: 2 processes vs 1 on a generation-bound tiny run, and merge time for 2212 records.

1. ``harness run geneval --model tiny --no-score`` (24 demo prompts × 4 images, 128², 8 steps, so that
   generation dominates start-up) with 1 process and with ``torchrun --nproc_per_node 2``; wall times
   and speed-up (target ≥ 1.6× on 2 cores), and byte-identical images.
2. ``harness merge`` of a synthetic scored run with 553 prompts × 4 = 2212 records (target < 5 s).

    python tests/perf/bench_scale_out.py [--skip-speedup]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

RUN = ["run", "geneval", "--model", "tiny", "--model-args", "resolution=128,steps=8", "--prompts", "demo",
       "--no-score", "--no-progress", "--threads", "1"]


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    import subprocess

    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def speedup(root: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HARNESS_CACHE": str(root / "cache"), "OMP_NUM_THREADS": "1"}
    timed([sys.executable, "-m", "harness", *RUN, "--limit", "1", "--out", "warm"], root, env)  # build tiny once
    one = timed([sys.executable, "-m", "harness", *RUN, "--out", "one"], root, env)
    torchrun = str(Path(sys.executable).parent / "torchrun")
    two = timed([torchrun, "--nproc_per_node", "2", "-m", "harness", *RUN, "--out", "two"], root, env)
    same = all((root / "two" / p.relative_to(root / "one")).read_bytes() == p.read_bytes()
               for p in (root / "one" / "images").rglob("*.png"))
    return {"one_process_s": round(one, 1), "two_processes_s": round(two, 1), "speedup": round(one / two, 2),
            "identical_images": same}


def merge_time(root: Path) -> dict:
    from benchmarks.geneval.benchmark import GenEval
    from benchmarks.geneval.prompts import DEMO_METADATA
    from benchmarks.geneval.score import Sample, score_key
    from harness.store import Store
    from harness.units import RecordLog

    out = root / "synthetic"
    images = out / "images"
    rng = random.Random(0)
    samples, records = [], []
    for i in range(553):
        meta = DEMO_METADATA[i % len(DEMO_METADATA)]
        folder = images / f"{i:05d}"
        folder.mkdir(parents=True)
        (folder / "metadata.jsonl").write_text(json.dumps(meta))
        for k in range(4):
            sample = Sample(folder / "samples" / f"{k:04d}.png", f"{i:05d}", meta, f"{i:05d}{k}".ljust(64, "0"))
            samples.append([sample.name, sample.item_id, sample.sha256])
            ok = rng.random() < 0.6
            records.append({"key": score_key(sample, "s" * 12), "image": sample.name, "item_id": sample.item_id,
                            "sha256": sample.sha256, "tag": meta["tag"], "prompt": meta["prompt"], "correct": ok,
                            "reason": "" if ok else "expected dog>=1, found 0", "metadata": meta,
                            "details": {"dog": [[1.0, 2.0, 30.0, 40.0, 0.91]]}})
    manifest = {"benchmark": "geneval", "run_id": "geneval-synthetic", "label": "GenEval-HF", "scorer": {},
                "scorer_hash": "s" * 12, "provenance": {}, "extra": {}, "images_dir": "images",
                "score_batch_size": 4, "samples": samples}
    (out / "scoring-ssssssssssss.json").write_text(json.dumps(manifest))
    half = len(records) // 2
    for rank, part in enumerate((records[:half], records[half:])):  # two ranks' record files
        with RecordLog(out / "records", "score-ssssssssssss", token=f"r{rank}of2") as log:
            log.append(part)
    with Store(root / "h.db") as store:
        start = time.perf_counter()
        outcome = GenEval().merge(out, store)
        seconds = time.perf_counter() - start
    assert outcome.summary["images"] == 2212
    return {"merge_records": 2212, "merge_s": round(seconds, 2)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-speedup", action="store_true")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        result = {"benchmark": "scale_out", **merge_time(root)}
        if not opts.skip_speedup:
            result.update(speedup(root))
    print(json.dumps(result))
    ok = result["merge_s"] < 5 and (opts.skip_speedup or (result["speedup"] >= 1.6 and result["identical_images"]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
