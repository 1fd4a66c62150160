"""The strict parser, the official parser, and both aggregations (pure functions; no I/O except the rubrics)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from harness.benchmarks.imgedit.aggregate import TYPE_ORDER, format_table, summarize_parity, summarize_strict
from harness.benchmarks.imgedit.parse import official_case_score, parse_official, parse_strict, rubric_labels

LABELS = ("Prompt Compliance", "Visual Naturalness", "Physical & Detail Integrity")
PLAIN = "Brief reasoning: ok.\nPrompt Compliance: 4\nVisual Naturalness: 3\nPhysical & Detail Integrity: 2"


@pytest.mark.parametrize("answer", [
    PLAIN,
    "Brief reasoning: ok.\n**Prompt Compliance:** 4\n**Visual Naturalness:** 3\n**Physical & Detail Integrity:** 2",
    "Prompt Compliance: 4/5\nVisual Naturalness: 3/5\nPhysical & Detail Integrity: 2/5",
    "- Prompt Compliance: 4.\n- Visual Naturalness: 3 (acceptable)\n- Physical & Detail Integrity: 2",
    '{\n"Prompt Compliance": 4,\n"Visual Naturalness": 3,\n"Physical & Detail Integrity": 2\n}',
    "prompt compliance : 4\nVISUAL NATURALNESS:3\nPhysical & Detail Integrity:  2",
    "Visual Naturalness: 3\nPhysical & Detail Integrity: 2\nPrompt Compliance: 4",  # order of the lines is free
])
def test_strict_parser_accepts_formatting_variants(answer: str) -> None:
    assert parse_strict(answer, LABELS).scores == (4, 3, 2)


@pytest.mark.parametrize(("answer", "reason"), [
    ("Prompt Compliance: 4\nVisual Naturalness: 3", "2 of 3 scores (missing Physical & Detail Integrity)"),
    (PLAIN + "\nOverall: 3", "4 scores (unexpected label(s) 'Overall')"),
    (PLAIN.replace(": 4", ": 6"), "Prompt Compliance: 6 is out of range 1-5"),
    (PLAIN.replace(": 4", ": 0"), "Prompt Compliance: 0 is out of range 1-5"),
    (PLAIN.replace(": 4", ": 10"), "Prompt Compliance: 10 is out of range 1-5"),
    (PLAIN.replace(": 4", ": 3.5"), "Prompt Compliance: 3.5 is not an integer"),
    (PLAIN + "\nPrompt Compliance: 5", "label 'Prompt Compliance' scored twice"),
    ("", "empty answer"),
    ("I cannot evaluate these images.", "0 of 3 scores"),
])
def test_strict_parser_counts_bad_answers_with_a_reason(answer: str, reason: str) -> None:
    parsed = parse_strict(answer, LABELS)
    assert parsed.scores is None and reason in parsed.reason


def test_official_parser_is_split_and_isdigit() -> None:
    # docs/imgedit.md, 'Official parser (parity)': bold, "/5", "4." and "4 (good)" are rejected; a 10 is accepted;
    # partial means kept
    assert parse_official(PLAIN) == [4, 3, 2]
    assert parse_official("**Prompt Compliance:** 4\nVisual Naturalness: 4/5\nA: 4.\nB: 4 (good)") == []
    assert parse_official("Prompt Compliance: 10\nVisual Naturalness: 3") == [10, 3]
    assert parse_official("Brief reasoning: no: 4\nX: 5") == [5]  # three parts: rejected
    assert official_case_score("A: 1\nB: 4\nC: 4") == 3.0
    assert official_case_score("A: 4\nB: 4\nC: 5") == 4.33
    assert official_case_score("A: 5\nB: 4\nC: 4") == 4.33
    assert official_case_score("A: 2\nB: 3") == 2.5
    assert official_case_score("nothing") is None


def test_rubric_labels_of_the_official_prompts(imgedit_data: Path) -> None:
    rubrics = json.loads((imgedit_data / "prompts.json").read_text())
    labels = {t: rubric_labels(text) for t, text in rubrics.items()}
    assert sorted(labels) == sorted(TYPE_ORDER)
    assert labels["extract"] == ("Object Identity", "Mask Precision", "Visual Quality")
    assert labels["compose"] == ("Instruction Compliance", "Visual Naturalness", "Physical Consistency & Fine Detail")
    assert all(len(v) == 3 for v in labels.values())


def _rec(case: str, t: str, answer: str | None, labels: tuple[str, ...] = LABELS) -> dict:
    if answer is None:
        return {"case": case, "edit_type": t, "status": "judge_failed", "scores": None, "answer": None,
                "reason": "HTTP 500"}
    p = parse_strict(answer, labels)
    return {"case": case, "edit_type": t, "status": "scored" if p.ok else "parse_failed",
            "scores": list(p.scores) if p.scores else None, "answer": answer, "reason": p.reason}


def test_strict_aggregation_counts_every_case_and_never_changes_the_denominator_silently() -> None:
    records = [_rec("1", "add", PLAIN), _rec("2", "add", "A: 4\nB: 3"), _rec("3", "add", None),
               _rec("4", "remove", PLAIN.replace(": 2", ": 5").replace(": 3", ": 5").replace(": 4", ": 5"))]
    s = summarize_strict(records, {"add": LABELS, "remove": LABELS})
    assert (s["cases"], s["scored"], s["parse_failed"], s["judge_failed"]) == (4, 2, 1, 1)
    add = s["types"]["add"]
    assert add["score"] == pytest.approx(3.0) and add["cases"] == 3 and add["coverage"] == pytest.approx(1 / 3)
    assert add["score_failed_as_1"] == pytest.approx((3.0 + 1 + 1) / 3)
    assert add["criteria"] == {"Prompt Compliance": 4, "Visual Naturalness": 3, "Physical & Detail Integrity": 2}
    assert s["overall"] == pytest.approx((3.0 + 5.0) / 2) and s["micro"] == pytest.approx(4.0)
    assert not s["complete"]


def test_parity_matches_the_official_code_on_recorded_answers(imgedit_data: Path, official_scripts,
                                                              tmp_path: Path) -> None:
    """737 answers in the formats judges produce; parity equals the official scripts' output exactly."""
    cases = json.loads((imgedit_data / "basic_edit.json").read_text())
    rubrics = json.loads((imgedit_data / "prompts.json").read_text())
    rng = random.Random(7)
    result, records = {}, []
    bold = strict_only_fails = 0
    for key, case in cases.items():
        labels = rubric_labels(rubrics[case["edit_type"]])
        scores = [rng.randint(1, 5) for _ in labels]
        lines = [f"{label}: {s}" for label, s in zip(labels, scores, strict=True)]
        form = rng.random()
        if form < 0.06:
            lines = [f"**{ln.replace(': ', ':** ')}" for ln in lines]  # official drops, strict scores
            bold += 1
        elif form < 0.09:
            lines = lines[:2]  # 2 scores: official averages 2, strict fails
            strict_only_fails += 1
        elif form < 0.11:
            lines[0] = lines[0][:-1] + "10"  # out of range: official keeps, strict fails
            strict_only_fails += 1
        answer = "Brief reasoning: recorded.\n" + "\n".join(lines)
        result[key] = answer
        records.append(_rec(key, case["edit_type"], answer, labels))
    (tmp_path / "result.json").write_text(json.dumps(result))
    expected = official_scripts(tmp_path / "result.json", imgedit_data / "basic_edit.json")
    parity = summarize_parity(records)
    assert {t: row["score"] for t, row in parity["types"].items()} == expected
    assert parity["overall"] == sum(expected.values()) / 9
    assert parity["dropped_unparseable"] == bold > 0 and parity["cases_kept"] == 737 - bold
    strict = summarize_strict(records, {t: rubric_labels(r) for t, r in rubrics.items()})
    assert strict["parse_failed"] == strict_only_fails > 0  # strict refuses 2 scores and a 10, reads bold
    assert strict["scored"] + strict["parse_failed"] == 737


def test_parity_overall_reproduces_the_leaderboard_rule() -> None:
    """Overall = unweighted mean of the 9 rounded per-type scores: MagicBrush's row gives 1.83
    (docs/imgedit.md, 'Per type and overall')."""
    row = dict(zip(TYPE_ORDER, [2.84, 1.58, 1.51, 1.97, 1.58, 1.75, 2.38, 1.62, 1.22], strict=True))
    records = []
    for t, target in row.items():  # 100 one-score answers per type whose official mean is the published score
        total = round(target * 100)
        for i in range(100):
            score = total // 100 + (1 if i < total % 100 else 0)
            records.append({"case": f"{t}{i}", "edit_type": t, "status": "parse_failed", "answer": f"Score: {score}",
                            "scores": None})
    parity = summarize_parity(records)
    assert {t: parity["types"][t]["score"] for t in TYPE_ORDER} == row
    assert parity["overall_2dp"] == 1.83 and parity["complete"]


def test_format_table_states_the_mode() -> None:
    records = [_rec("1", "add", PLAIN), _rec("2", "add", None)]
    summary = {"label": "ImgEdit-Basic", "mode": "parity", "strict": summarize_strict(records, {"add": LABELS}),
               "parity": summarize_parity(records),
               "judge": {"requested_model": "gpt-4.1", "returned_models": ["gpt-4.1-2025-04-14"], "requests": 3,
                         "retries": 1, "cache_hits": 0, "prompt_tokens": 10, "completion_tokens": 2, "cost_usd": 0.1}}
    text = format_table(summary)
    assert "mode: parity (official parser + dropping + 2-decimal rounding)" in text
    assert "1 scored + 0 parse_failed + 1 judge_failed" in text and "returned: gpt-4.1-2025-04-14" in text
    summary["mode"] = "strict"
    assert "mode: strict" in format_table(summary)
