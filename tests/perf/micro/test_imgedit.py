"""ImgEdit's pure paths over the 737 Basic cases: the strict parser, then both aggregations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.benchmarks.imgedit.aggregate import TYPE_ORDER, summarize_parity, summarize_strict
from harness.benchmarks.imgedit.parse import parse_strict

CASES = 737


def parse_all(answers: list) -> list:
    return [parse_strict(a.text, a.labels) for a in answers]


def test_parse_strict(benchmark: Any, imgedit_answers: list) -> None:
    parsed = benchmark(parse_all, imgedit_answers)
    assert len(parsed) == CASES
    assert [p.scores for p in parsed] == [a.strict_scores for a in imgedit_answers]
    assert all(p.reason for p in parsed if not p.ok)


@pytest.fixture(scope="module")
def records(imgedit_answers: list) -> list[dict[str, Any]]:
    """Per-case records as the benchmark writes them; an empty answer stands for a judge that failed."""
    rows = []
    for a, p in zip(imgedit_answers, parse_all(imgedit_answers), strict=True):
        if not a.text:
            rows.append({"case": a.case, "edit_type": a.edit_type, "status": "judge_failed", "scores": None,
                         "answer": None, "reason": "HTTP 500"})
        else:
            rows.append({"case": a.case, "edit_type": a.edit_type, "status": "scored" if p.ok else "parse_failed",
                         "scores": list(p.scores) if p.ok else None, "answer": a.text, "reason": p.reason})
    return rows


def aggregate(records: list[dict[str, Any]], labels: dict[str, tuple[str, ...]]) -> tuple[dict, dict]:
    return summarize_strict(records, labels), summarize_parity(records)


def test_aggregate_strict_and_parity(benchmark: Any, imgedit_answers: list, records: list[dict[str, Any]],
                                     shared_data: Path) -> None:
    labels = {a.edit_type: a.labels for a in imgedit_answers}
    strict, parity = benchmark(aggregate, records, labels)
    failed = sum(not a.text for a in imgedit_answers)
    assert (strict["cases"], strict["judge_failed"], parity["judge_failed"]) == (CASES, failed, failed) and failed
    assert strict["scored"] == sum(a.strict_scores is not None for a in imgedit_answers)
    assert parity["cases_kept"] == sum(a.official_keeps for a in imgedit_answers)
    assert parity["dropped_unparseable"] == CASES - parity["cases_kept"] - failed
    assert strict["complete"] and parity["complete"] and list(strict["types"]) == list(TYPE_ORDER)
    cases = json.loads((shared_data / "imgedit" / "basic_edit.json").read_text())
    assert {t: row["cases"] for t, row in strict["types"].items()} == {
        t: sum(c["edit_type"] == t for c in cases.values()) for t in TYPE_ORDER}
