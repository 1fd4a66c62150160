"""Synthetic GenEval runs (records only, no model) for testing comparisons and report rendering at scale."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path

from harness.benchmarks.geneval.rules import TAGS
from harness.benchmarks.geneval.summary import summarize

OFFICIAL_PROMPTS = {"single_object": 80, "two_object": 99, "counting": 80, "colors": 94, "position": 100,
                    "color_attr": 100}


def write_synthetic_run(out: Path, *, rates: Mapping[str, float], seed: int, images_per_prompt: int = 4,
                        prompts: Mapping[str, int] = OFFICIAL_PROMPTS, flip: Mapping[str, float] | None = None,
                        base: Path | None = None, label: str = "GenEval-HF") -> Path:
    """A scored run folder (summary.json + results.jsonl, images absent) with per-tag pass rates.

    With ``base``, verdicts are copied from that run and then a fraction ``flip[tag]`` of the tag's
    prompts has all its images turned from correct to incorrect (a planted regression).
    """
    rng = random.Random(seed)
    records = []
    base_results = {}
    if base is not None:
        for line in (base / "results.jsonl").read_text().splitlines():
            r = json.loads(line)
            base_results[r["filename"]] = r["correct"]
    index = 0
    for tag in TAGS:
        n = prompts.get(tag, 0)
        chosen = set(rng.sample(range(n), round(n * (flip or {}).get(tag, 0.0)))) if flip else set()
        for j in range(n):
            meta = {"tag": tag, "include": [{"class": "dog", "count": 1}], "prompt": f"a photo of prompt {index}"}
            for k in range(images_per_prompt):
                filename = f"{out.name}/images/{index:05d}/samples/{k:04d}.png"
                key = f"{base.name}/images/{index:05d}/samples/{k:04d}.png" if base is not None else None
                correct = base_results[key] if key in base_results else rng.random() < rates.get(tag, 0.5)
                if j in chosen:
                    correct = False
                records.append({"filename": filename, "tag": tag, "prompt": meta["prompt"], "correct": correct,
                                "reason": "" if correct else "expected dog>=1, found 0",
                                "metadata": json.dumps(meta), "details": "{}", "item_id": f"{index:05d}"})
            index += 1
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps({k: v for k, v in r.items() if k != "item_id"}) + "\n")
    summary = {"benchmark": "geneval", "label": label, "run_id": f"geneval-{out.name}",
               "scorer_hash": "synthetic", "prompt_set": {"name": "synthetic", "sha256": "s" * 64},
               "model": {"adapter": out.name}, **summarize(records)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
    return out
