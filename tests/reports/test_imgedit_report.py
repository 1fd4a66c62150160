"""ImgEdit runs in reports and comparisons: per-type table with status counts, grids, paired judge-score tests."""

from __future__ import annotations

import json
import random
from pathlib import Path

from harness.benchmarks.imgedit.aggregate import summarize_parity, summarize_strict
from harness.reports.html import build_report
from harness.reports.regression import compare_runs
from harness.reports.runs import load_run

TYPES = ("add", "remove", "replace", "adjust", "extract", "style", "background", "compose", "action")
LABELS = {t: ("Prompt Compliance", "Visual Naturalness", "Physical & Detail Integrity") for t in TYPES}


def write_imgedit_run(out: Path, *, seed: int, drop: dict[str, float] | None = None, base: Path | None = None,
                      failed: int = 0) -> Path:
    rng = random.Random(seed)
    prior = {}
    if base is not None:
        prior = {r["case"]: r for r in map(json.loads, (base / "results.jsonl").read_text().splitlines())}
    records = []
    for t in TYPES:
        for i in range(40):
            case = f"{t}-{i}"
            if case in prior:
                scores = list(prior[case]["scores"]) if prior[case]["scores"] else None
            else:
                scores = [min(5, max(1, round(rng.gauss(3.5, 0.8)))) for _ in range(3)]
            if drop and t in drop and scores and i < 30:
                scores = [max(1, s - 1) for s in scores]
            status = "scored" if scores else "judge_failed"
            if i < failed:
                status, scores = "judge_failed", None
            answer = None if scores is None else "\n".join(f"{label}: {s}" for label, s in zip(LABELS[t], scores,
                                                                                               strict=True))
            records.append({"case": case, "edit_type": t, "image": f"{case}.png", "status": status,
                            "reason": "" if status == "scored" else "HTTP 500 after 5 attempts", "scores": scores,
                            "answer": answer})
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    summary = {"benchmark": "imgedit", "label": "ImgEdit (judge gpt-4.1)", "run_id": f"imgedit-{out.name}",
               "mode": "strict", "scorer_hash": "j", "strict": summarize_strict(records, LABELS),
               "parity": summarize_parity(records), "judge": {"requested_model": "gpt-4.1",
                                                               "returned_models": ["gpt-4.1-2025-04-14"]},
               "model": {"adapter": out.name}}
    summary["overall"] = summary["strict"]["overall"]
    (out / "summary.json").write_text(json.dumps(summary))
    return out


def test_imgedit_report_and_judge_score_gating(tmp_path):
    base = write_imgedit_run(tmp_path / "base", seed=1, failed=2)
    same = write_imgedit_run(tmp_path / "same", seed=2, base=base)
    worse = write_imgedit_run(tmp_path / "worse", seed=3, base=base, drop={"add": 1.0})
    comps, _ = compare_runs(load_run(str(base)), load_run(str(same)))
    assert all(c.verdict == "same" for c in comps)
    comps, _ = compare_runs(load_run(str(base)), load_run(str(worse)))
    flagged = {c.metric for c in comps if c.verdict == "regression"}
    assert "imgedit_add" in flagged and "imgedit_remove" not in flagged

    html_path, md_path = build_report([load_run(str(base)), load_run(str(worse))], tmp_path / "rep", grid_limit=4)
    page = html_path.read_text()
    assert "ImgEdit: imgedit-base" in page and "judge_failed" in page and "gpt-4.1-2025-04-14" in page
    assert page.count("class=prompt") == 8 and "missing" in page  # no images here: shown as missing
    assert "| add |" in md_path.read_text()
