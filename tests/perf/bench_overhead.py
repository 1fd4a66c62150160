"""Harness overhead: a GenEval generation run of `tiny` (24 demo prompts × 4 images) vs a bare loop.

Both sides use the same loaded pipeline, the same prompts and the same per-image CPU-generator seeds;
the bare loop saves each PNG with ``Image.save`` (as the official generation script does). The harness
side is the real ``GenEval.run`` generation stage with ``--no-score``: manifest, metadata files, work
units, atomic PNG writes with fsync, record log with fsync, store ingest. Runs alternate, median of N.

    python tests/perf/bench_overhead.py [--repeats 5]

Prints a JSON line with both medians and the ratio; exits 1 if the ratio exceeds 1.10.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--limit", type=int, default=None, help="prompts per tag (default: all 4 demo prompts)")
    opts = parser.parse_args()

    import torch

    from harness.benchmarks.geneval.benchmark import GenEval
    from harness.benchmarks.geneval.prompts import load_prompts
    from harness.engine.lifecycle import evaluate
    from harness.models.tiny import TinyDreamLite
    from harness.store import Store

    torch.set_num_threads(1)
    model = TinyDreamLite()
    model.ensure_loaded()
    pipe = model.pipe
    kwargs = model._call_kwargs({})
    items = load_prompts("demo").select(None, opts.limit)
    bench = GenEval(prompts="demo", limit=opts.limit)
    harness_times, bare_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = Store(root / "h.db")
        for rep in range(opts.repeats + 1):  # the first round warms caches and is discarded
            out = root / f"h{rep}"
            start = time.perf_counter()
            outcome = evaluate(bench, model, out=out, store=store, score=False)
            h = time.perf_counter() - start
            assert outcome.generated == len(items) * 4

            bare = root / f"b{rep}"
            start = time.perf_counter()
            for item in items:
                folder = bare / item.folder / "samples"
                folder.mkdir(parents=True)
                for k in range(4):
                    gen = torch.Generator("cpu").manual_seed(42 + k)
                    image = pipe(prompt=item.prompt, generator=gen, output_type="pil", **kwargs).images[0]
                    image.save(folder / f"{k:04d}.png")
            b = time.perf_counter() - start
            if rep:
                harness_times.append(h)
                bare_times.append(b)
            # same seeds, same pipeline: the bytes must match, or the comparison is not fair
            assert (out / "images" / items[0].folder / "samples" / "0003.png").read_bytes() == \
                (bare / items[0].folder / "samples" / "0003.png").read_bytes()
        store.close()
    result = {
        "benchmark": "harness_overhead", "images": len(items) * 4, "repeats": opts.repeats,
        "harness_median_s": round(statistics.median(harness_times), 3),
        "bare_loop_median_s": round(statistics.median(bare_times), 3),
        "ratio": round(statistics.median(harness_times) / statistics.median(bare_times), 3),
        # each round times both right after each other: the median of those paired ratios resists a busy machine
        "paired_ratio_median": round(statistics.median(h / b for h, b in zip(harness_times, bare_times,
                                                                             strict=True)), 3),
        "harness_s": [round(t, 3) for t in harness_times], "bare_s": [round(t, 3) for t in bare_times],
    }
    print(json.dumps(result))
    return 0 if min(result["ratio"], result["paired_ratio_median"]) <= 1.05 else 1


if __name__ == "__main__":
    sys.exit(main())
