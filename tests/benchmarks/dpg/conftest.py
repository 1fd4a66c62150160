"""DPG-Bench test helpers: the official scorer's rules re-implemented step by step (it is not in the repository),
and a VQA oracle whose answers are a fixed function of the image's pixels and the question ("recorded answers").

``run_official`` (fixture ``official_dpg``) follows ``dpg_bench/compute_dpg_bench.py`` at ELLA 3c228f1
(docs/dpg.md, "Scoring"), run as one process: ``pandas.read_csv`` of the question file, every data row but
the first, a new question dict whenever an item's row follows another item's row; ``os.listdir`` of the image
folder; per file, the first ``pic_num`` crop boxes of R, every question asked per crop, ``answer == 'yes'``, one
score dict for all crops, parents zeroing children in CSV order with a ``KeyError`` for a parent the item
lacks, any exception dropping the file; the overall and category means with numpy, categories from the raw
answers of the last crop.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

MIXED = ("yes", "no", "Yes", "yes.", " no", "no", "Yes.", "", "maybe", "yes", "NO", "yes ")


def run_official(image_root: Path, csv_path: Path, resolution: int | None, pic_num: int, vqa: Any) -> dict[str, Any]:
    """The official scorer's numbers for a folder: overall, L1, L2 (×100), per-file scores, failed files."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    questions: dict[str, dict[str, dict]] = {}
    previous = ""
    for i, line in pd.read_csv(csv_path).iterrows():
        if i == 0:
            continue
        current = line.item_id
        qid = int(line.proposition_id)
        parents = [int(d.strip()) for d in line.dependency.split(",")]
        if current != previous:
            questions[current] = {"tuple": {}, "dependency": {}, "question": {}}
        questions[current]["tuple"][qid] = line.tuple
        questions[current]["dependency"][qid] = parents
        questions[current]["question"][qid] = line.question_natural_language
        previous = current

    def one_file(path: str) -> tuple[float, list[float], dict, dict]:
        image = Image.open(path)
        r = resolution
        crops = [(0, 0, r, r), (r, 0, r * 2, r), (0, r, r, r * 2), (r, r, r * 2, r * 2)][:pic_num]
        value = questions.get(os.path.basename(path).split(".")[0])
        scores_by_qid: dict[int, float] = {}
        tile_scores = []
        for box in crops:
            crop = image.crop(box)
            for qid, question in value["question"].items():
                scores_by_qid[qid] = float(vqa.vqa(crop, question) == "yes")
            raw = scores_by_qid.copy()
            for qid, parents in value["dependency"].items():
                zero = False
                for parent in parents:
                    if parent == 0:
                        continue
                    if scores_by_qid[parent] == 0:
                        zero = True
                        break
                if zero:
                    scores_by_qid[qid] = 0
            tile_scores.append(sum(scores_by_qid.values()) / len(scores_by_qid))
        return sum(tile_scores) / len(tile_scores), tile_scores, value["tuple"], raw

    scores, per_file, failed = [], {}, []
    by_category: dict[str, list[float]] = defaultdict(list)
    for name in os.listdir(image_root):
        try:
            score, tiles, tuples, raw = one_file(os.path.join(image_root, name))
            scores.append(score)
            per_file[name] = tiles
            for qid in tuples:
                by_category[tuples[qid].split("(")[0].strip()].append(raw[qid])
        except Exception:
            failed.append(name)
    categories = set(by_category)
    l1: dict[str, list[float]] = defaultdict(list)
    for category in categories:
        l1[category.split("-")[0].strip()].extend(by_category[category])
    return {"overall": float(np.mean(scores)) * 100 if scores else None,
            "l1": {k: float(np.mean(v)) * 100 for k, v in l1.items()},
            "l2": {k: float(np.mean(by_category[k])) * 100 for k in sorted(categories)},
            "per_file": per_file, "failed": sorted(failed)}


class Oracle:
    """Answers as a fixed function of (pixels, question): one of ``formats``, so both scorers see the same
    recorded answers. ``fail`` names images (by pixel hash) whose questions raise, as a broken VQA call would.
    ``vqa`` is the official scorer's one-question call; ``answer`` the harness's batched call."""

    def __init__(self, formats: Sequence[str] = MIXED, fail: set[str] | None = None):
        self.formats, self.fail = tuple(formats), fail or set()
        self.calls = 0

    @staticmethod
    def pixels(image: Any) -> str:
        return hashlib.sha256(image.convert("RGB").tobytes()).hexdigest()

    def vqa(self, image: Any, question: str) -> str:
        self.calls += 1
        digest = self.pixels(image)
        if digest in self.fail:
            raise RuntimeError("VQA failed on this image")
        pick = hashlib.sha256((digest + question).encode()).digest()[0]
        return self.formats[pick % len(self.formats)]

    def answer(self, image: Any, questions: Sequence[str]) -> list[str]:
        return [self.vqa(image, q) for q in questions]


@pytest.fixture
def oracle() -> Callable[..., Oracle]:
    """The VQA oracle class (``oracle(formats=..., fail=...)``)."""
    return Oracle


@pytest.fixture
def official_dpg() -> Callable[..., dict[str, Any]]:
    """The official scorer's rules: ``official_dpg(image_root, csv_path, resolution, pic_num, vqa)``."""
    return run_official
