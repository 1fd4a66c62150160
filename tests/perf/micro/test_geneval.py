"""GenEval's pure paths over 553 official prompts x 4 images: the decision rules, then the summary."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from harness.benchmarks.geneval.rules import TAGS
from harness.benchmarks.geneval.summary import summarize

IMAGES = 2212


def test_rules_filter_color_requests_evaluate(benchmark: Any, geneval_images: list, judge: Callable) -> None:
    records = benchmark(judge, geneval_images)
    assert len(records) == IMAGES
    assert all(bool(r["reason"]) != r["correct"] for r in records)  # a reason exactly for each failure
    outcomes: dict[str, set[bool]] = {}
    for r in records:
        outcomes.setdefault(r["tag"], set()).add(r["correct"])
    assert outcomes == {tag: {True, False} for tag in TAGS}
    kept = [(r["tag"], row[4]) for r in records for rows in r["details"].values() for row in rows]
    assert kept and all(score > (0.9 if tag == "counting" else 0.3) for tag, score in kept)
    assert any(r["colors"] for r in records if r["tag"] == "color_attr")


def test_summary(benchmark: Any, geneval_records: list[dict[str, Any]]) -> None:
    summary = benchmark(summarize, geneval_records)
    assert (summary["images"], summary["prompts"], summary["complete"]) == (IMAGES, 553, True)
    assert sum(row["correct_images"] for row in summary["tags"].values()) == sum(r["correct"] for r in geneval_records)
    assert summary["overall"] == pytest.approx(np.mean([row["score"] for row in summary["tags"].values()]))
    low, high = summary["overall_ci95"]
    assert low < summary["overall"] < high
