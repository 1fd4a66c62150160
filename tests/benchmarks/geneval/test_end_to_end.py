"""`harness run geneval` / `harness score geneval` end to end on the tiny model, through the real CLI.

Tiny random-weight DreamLite pipeline, tiny Mask2Former and tiny open_clip, all built in code and loaded
back through the real `from_pretrained` paths. Subprocesses are real `python -m harness` processes, so
`kill -9` is a real kill.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.store import Store

TINY = ["--model", "tiny", "--prompts", "demo", "--detector", "tiny", "--clip", "tiny", "--threads", "1",
        "--no-progress"]
SMALL = ["--limit", "1", "--images-per-prompt", "2"]  # 6 prompts x 2 images


def harness(*args: str, cwd: Path, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True,
                         env=env, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"harness {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """One uninterrupted small run, shared by the tests below."""
    cwd = tmp_path_factory.mktemp("ref")
    out = harness("run", "geneval", *TINY, *SMALL, "--out", "run", "--store", "h.db", cwd=cwd)
    return cwd, cwd / "run", out


def test_run_writes_official_layout_results_summary_and_store(reference_run):
    cwd, run, out = reference_run
    assert "GenEval-tiny-random" in out.stdout and "meaningless" in out.stdout
    assert "results:" in out.stdout and "summary.json" in out.stdout
    folders = sorted(p.name for p in (run / "images").iterdir())
    assert folders == ["00000", "00004", "00008", "00012", "00016", "00020"]  # indices of the prompt set
    meta = json.loads((run / "images" / "00008" / "metadata.jsonl").read_text())
    assert meta["tag"] == "counting" and meta["exclude"] == [{"class": "bird", "count": 3}]
    assert sorted(p.name for p in (run / "images" / "00008" / "samples").iterdir()) == ["0000.png", "0001.png"]

    results = pd.read_json(run / "results.jsonl", lines=True)
    assert list(results.columns) == ["filename", "tag", "prompt", "correct", "reason", "metadata", "details"]
    assert len(results) == 12
    assert all(isinstance(json.loads(m), dict) for m in results["metadata"])
    for details in results["details"]:
        for boxes in json.loads(details).values():
            assert all(len(b) == 5 and b[4] > 0.3 for b in boxes)

    summary = json.loads((run / "summary.json").read_text())
    assert summary["images"] == 12 and summary["prompts"] == 6 and summary["expected_images"] == 12
    assert summary["label"] == "GenEval-tiny-random"
    # the official aggregation (summary_scores.py): per-tag image mean, then plain mean of tags
    by_tag = results.groupby("tag", sort=False)["correct"].mean()
    assert summary["overall"] == pytest.approx(by_tag.mean())
    for tag, score in by_tag.items():
        assert summary["tags"][tag]["score"] == pytest.approx(score)
    assert summary["provenance"]["model"]["name"] == "tiny"
    assert summary["provenance"]["detector"]["target"].endswith(":TinyMask2Former")

    with Store(cwd / "h.db") as store:
        run_id = summary["run_id"]
        assert len(store.samples(run_id)) == 12
        scores = store.scores(run_id)
        assert len(scores) == 12 and scores["correct"].sum() == results["correct"].sum()
        metrics = store.metrics(run_id)
        assert metrics.set_index("subset").loc["overall", "value"] == pytest.approx(summary["overall"])
        assert store.runs().loc[0, "status"] == "finished"


def test_rerun_is_a_noop_with_identical_summary(reference_run):
    cwd, run, _ = reference_run
    before = (run / "summary.json").read_text()
    records = sorted((run / "records").glob("*.jsonl"))
    harness("run", "geneval", *TINY, *SMALL, "--out", "run", "--store", "h.db", cwd=cwd)
    assert (run / "summary.json").read_text() == before
    lines = sum(len(p.read_text().splitlines()) for p in (run / "records").glob("*.jsonl"))
    assert lines == 24  # 12 generation + 12 score records, nothing duplicated
    assert sorted((run / "records").glob("*.jsonl"))[: len(records)] == records


def wait_for_records(folder: Path, stage: str, at_least: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        n = sum(len(p.read_text().splitlines()) for p in folder.glob(f"{stage}-*.jsonl")) if folder.exists() else 0
        if n >= at_least:
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended before {at_least} {stage} records: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {stage} records")


def test_kill_9_during_generation_and_scoring_then_resume_gives_identical_summary(reference_run, tmp_path):
    _, ref, _ = reference_run
    args = [sys.executable, "-m", "harness", "run", "geneval", *TINY, *SMALL, "--out", "run", "--store", "h.db",
            "--batch-size", "2", "--score-batch-size", "2"]
    # reference with the same batch sizes (batch size is part of the run's identity)
    harness(*args[3:], "--out", "full", cwd=tmp_path)

    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_records(tmp_path / "run" / "records", "generate", 6, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    generated = sum(len(p.read_text().splitlines()) for p in (tmp_path / "run" / "records").glob("generate-*"))
    assert 6 <= generated < 12, "the kill should land mid-generation"

    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_records(tmp_path / "run" / "records", "score", 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    scored = sum(len(p.read_text().splitlines()) for p in (tmp_path / "run" / "records").glob("score-*"))
    if scored < 12:  # killed mid-scoring (not just after): no summary may exist yet
        assert not (tmp_path / "run" / "summary.json").exists()

    harness(*args[3:], cwd=tmp_path)
    full = json.loads((tmp_path / "full" / "summary.json").read_text())
    resumed = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert resumed == full
    recs = [json.loads(line) for p in (tmp_path / "run" / "records").glob("generate-*") for line in
            p.read_text().splitlines() if line.endswith("}")]
    assert len({r["key"] for r in recs}) == 12 and len(recs) == 12  # none lost, none duplicated
    for png in (tmp_path / "full" / "images").rglob("*.png"):  # byte-identical images
        assert (tmp_path / "run" / "images" / png.relative_to(tmp_path / "full" / "images")).read_bytes() == \
            png.read_bytes()
    assert sorted(p.name for p in (tmp_path / "run" / "images").rglob("*") if p.name.startswith(".")) == []
    assert ref.exists()


def test_score_foreign_folder_matches_run_and_reports_skipped_files(reference_run, tmp_path):
    _, run, _ = reference_run
    foreign = tmp_path / "theirs"
    shutil.copytree(run / "images", foreign)
    (foreign / "00000" / "samples" / "0002.jpg").write_bytes(b"not scored")
    (foreign / "00000" / "samples" / "notes.txt").write_text("x")
    (foreign / "grid.png").write_bytes(b"")  # files at top level are ignored like the official evaluator
    out = harness("score", "geneval", "--images", str(foreign), "--detector", "tiny", "--clip", "tiny",
                  "--no-progress", "--store", "h.db", cwd=tmp_path)
    assert "2 file(s) in sample folders were not PNG samples" in out.stdout
    ours = pd.read_json(run / "results.jsonl", lines=True)
    theirs = pd.read_json(foreign / "results.jsonl", lines=True)
    assert list(theirs["correct"]) == list(ours["correct"])
    assert list(theirs["reason"]) == list(ours["reason"])
    summary = json.loads((foreign / "summary.json").read_text())
    assert summary["skipped_files"] == ["00000/samples/0002.jpg", "00000/samples/notes.txt"]


def test_bad_inputs_give_one_line_errors_and_keep_work(reference_run, tmp_path):
    cwd, run, _ = reference_run
    out = harness("run", "geneval", "--model", "tinny", cwd=tmp_path, check=False)
    assert out.returncode == 2 and "Did you mean 'tiny'" in out.stderr and len(out.stderr.strip().splitlines()) == 1

    out = harness("run", "geneval", *TINY, "--detector", "mask2former", cwd=tmp_path, check=False)
    assert out.returncode == 2 and "Did you mean 'mask2former-hf'" in out.stderr

    out = harness("run", "geneval", *TINY, "--model-args", "stepz=3", cwd=tmp_path, check=False)
    assert out.returncode == 2 and "did you mean 'steps'" in out.stderr

    not_a_pipeline = tmp_path / "weights"
    not_a_pipeline.mkdir()
    out = harness("run", "geneval", "--model", "dreamlite-mobile", "--model-args", f"weights={not_a_pipeline}",
                  "--prompts", "demo", "--limit", "1", "--no-progress", cwd=tmp_path, check=False)
    assert out.returncode == 2 and "not a diffusers pipeline folder" in out.stderr and str(not_a_pipeline) in out.stderr

    # same folder, other settings: refused, and nothing in it is touched
    before = (run / "summary.json").read_text()
    out = harness("run", "geneval", *TINY, "--limit", "1", "--images-per-prompt", "3", "--out", "run", cwd=cwd,
                  check=False)
    assert out.returncode == 2 and "images_per_prompt" in out.stderr and "another --out" in out.stderr
    assert (run / "summary.json").read_text() == before

    empty = tmp_path / "empty"
    empty.mkdir()
    out = harness("score", "geneval", "--images", str(empty), "--detector", "tiny", "--clip", "tiny", cwd=tmp_path,
                  check=False)
    assert out.returncode == 2 and "no samples found" in out.stderr


def test_corrupt_png_and_bad_metadata_name_the_file(reference_run, tmp_path):
    _, run, _ = reference_run
    folder = tmp_path / "imgs"
    shutil.copytree(run / "images", folder)
    bad_png = folder / "00004" / "samples" / "0001.png"
    bad_png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage")
    out = harness("score", "geneval", "--images", str(folder), "--detector", "tiny", "--clip", "tiny",
                  "--score-batch-size", "1", "--no-progress", "--store", "h.db", cwd=tmp_path, check=False)
    assert out.returncode == 2 and str(bad_png) in out.stderr and "corrupt PNG" in out.stderr
    scored = sum(len(p.read_text().splitlines()) for p in (folder / "records").glob("score-*.jsonl"))
    assert scored >= 2  # the images scored before the bad one stay recorded
    with Store(tmp_path / "h.db") as store:
        assert len(store.scores(store.runs().loc[0, "run_id"])) == scored

    bad_png.write_bytes(b"JFIF not a png")
    out = harness("score", "geneval", "--images", str(folder), "--detector", "tiny", "--clip", "tiny",
                  "--no-progress", cwd=tmp_path, check=False)
    assert "not a PNG file" in out.stderr

    meta = folder / "00012" / "metadata.jsonl"
    meta.write_text(json.dumps({"tag": "colors", "include": [{"class": "car", "count": 1, "color": "teal"}],
                                "prompt": "a teal car"}))
    out = harness("score", "geneval", "--images", str(folder), "--detector", "tiny", "--clip", "tiny",
                  cwd=tmp_path, check=False)
    assert out.returncode == 2 and str(meta) in out.stderr and "include[0].color 'teal'" in out.stderr
