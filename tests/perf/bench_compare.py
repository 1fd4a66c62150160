"""Regression gating figures: A/A false-regression count and planted-regression detection.

1. A/A on tiny runs: the `tiny` model on the demo prompts run with 21 different seeds (one process, model
   and scorers loaded once); `compare` of run 0 with each of the other 20: flagged regressions must be 0.
2. A/A on synthetic full-size runs (553 prompts × 4, realistic per-tag pass rates): 20 comparisons, 0 flags.
3. Planted regression: one tag's verdicts flipped to wrong on 15% of its prompts: must be flagged.

    python tests/perf/bench_compare.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))  # synthetic_runs

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tiny_aa(root: Path) -> int:
    import torch

    from harness.engine.lifecycle import evaluate
    from harness.models.tiny import TinyDreamLite
    from harness.reports.regression import compare_runs
    from harness.reports.runs import load_run
    from harness.store import Store

    torch.set_num_threads(1)
    model = TinyDreamLite()
    flags = 0
    with Store(root / "h.db") as store:
        outs = []
        for seed in range(42, 63):
            config = {"prompts": "demo", "detector": "tiny", "clip": "tiny", "seed": seed}
            outs.append(evaluate("geneval", model, config, out=root / f"tiny{seed}", store=store).out)
    base = load_run(str(outs[0]))
    for out in outs[1:]:
        comps, _ = compare_runs(base, load_run(str(out)))
        flags += sum(c.verdict == "regression" for c in comps)
    return flags


def synthetic(root: Path) -> tuple[int, list[str]]:
    from synthetic_runs import write_synthetic_run

    from harness.reports.regression import compare_runs
    from harness.reports.runs import load_run

    rates = {"single_object": 0.95, "two_object": 0.7, "counting": 0.6, "colors": 0.8, "position": 0.25,
             "color_attr": 0.45}
    base = write_synthetic_run(root / "base", rates=rates, seed=1)
    flags = 0
    for rep in range(20):
        other = write_synthetic_run(root / f"aa{rep}", rates=rates, seed=100 + rep)
        comps, _ = compare_runs(load_run(str(base)), load_run(str(other)))
        flags += sum(c.verdict == "regression" for c in comps)
    planted = write_synthetic_run(root / "planted", rates=rates, seed=3, base=base, flip={"colors": 0.15})
    comps, _ = compare_runs(load_run(str(base)), load_run(str(planted)))
    return flags, [c.metric for c in comps if c.verdict == "regression"]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tiny_flags = tiny_aa(root)
        synth_flags, planted = synthetic(root)
    result = {"benchmark": "compare_gating", "tiny_aa_false_regressions_of_20": tiny_flags,
              "synthetic_aa_false_regressions_of_20": synth_flags, "planted_colors_15pct_flagged": planted}
    print(json.dumps(result))
    return 0 if tiny_flags == 0 and synth_flags == 0 and "geneval_colors" in planted else 1


if __name__ == "__main__":
    sys.exit(main())
