"""DPG-Bench VQA: all questions of a tile in one batched call vs one question per call (the official loop).

The tiny random-weight ViLT (``vqa-tiny``) on CPU answers every question of the built-in demo prompts about
4 tiles each (seeded noise images, 64² by default; the tiny processor resizes any size to 64), both
ways: ``answer(tile, questions)`` (one forward pass per tile) and ``answer(tile, [q])`` per question, as
``compute_dpg_bench.py`` calls mPLUG. Rounds alternate; the first is a warm-up; medians are reported. The
answers must be identical.

    python tests/perf/bench_dpg_vqa.py [--repeats 5] [--threads 1] [--questions 16]

``--questions N`` pads every prompt's question list to N with paraphrases (the real set averages more
questions per prompt than the demo). Prints one JSON line; exits 1 if any answer differs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--questions", type=int, default=0, help="pad each prompt's questions to N (0: as they are)")
    parser.add_argument("--size", type=int, default=64, help="tile side in pixels")
    opts = parser.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from harness.benchmarks.dpg.data import load_prompt_set
    from harness.scorers.vqa import TinyVQA

    torch.set_num_threads(opts.threads)
    vqa = TinyVQA()
    vqa.load()
    rng = np.random.default_rng(0)
    work = []
    for prompt in load_prompt_set("demo").prompts:
        questions = list(prompt.asked())
        while len(questions) < opts.questions:
            questions.append(f"Looking closely, {questions[len(questions) % len(prompt.asked())].lower()}")
        for _ in range(4):
            pixels = (rng.random((opts.size, opts.size, 3)) * 255).astype("uint8")
            work.append((Image.fromarray(pixels), questions))

    def batched() -> list[list[str]]:
        return [vqa.answer(image, questions) for image, questions in work]

    def one_by_one() -> list[list[str]]:
        return [[vqa.answer(image, [q])[0] for q in questions] for image, questions in work]

    times: dict[str, list[float]] = {"batched": [], "per_question": []}
    answers: dict[str, list[list[str]]] = {}
    for rep in range(opts.repeats + 1):
        for name, fn in (("batched", batched), ("per_question", one_by_one)):
            start = time.perf_counter()
            answers[name] = fn()
            if rep:
                times[name].append(time.perf_counter() - start)
    same = answers["batched"] == answers["per_question"]
    b, p = statistics.median(times["batched"]), statistics.median(times["per_question"])
    n_q = sum(len(q) for _, q in work)
    print(json.dumps({"tiles": len(work), "questions": n_q, "size": opts.size, "threads": opts.threads,
                      "batched_s": round(b, 4), "per_question_s": round(p, 4), "speedup": round(p / b, 2),
                      "identical_answers": same, "yes_fraction": round(
                          sum(a == "yes" for row in answers["batched"] for a in row) / n_q, 3)}))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
