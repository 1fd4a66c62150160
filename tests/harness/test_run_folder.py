"""A run folder has one owner, and nothing is written or read outside it.

`--out` that is a file or someone else's folder, two processes on one `--out`, `--shard` jobs and launcher
ranks sharing a folder, a scoring job writing elsewhere (its own store row), and scoring manifests or image
folders that point outside. Commands run through the real CLI (`main`, or `python -m harness` children where
processes must race or be killed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.core.errors import HarnessError
from harness.engine.distributed import Shard
from harness.store import Store

TINY = ["--model", "tiny", "--prompts", "demo", "--detector", "tiny", "--clip", "tiny", "--threads", "1",
        "--no-progress"]
SMALL = ["--limit", "1", "--images-per-prompt", "2"]  # 6 prompts x 2 images
SCORE = ["--detector", "tiny", "--clip", "tiny", "--threads", "1", "--no-progress"]
BIN = Path(sys.executable).parent


def official_layout(folder: Path, prompts: tuple[int, ...] = (0, 4)) -> Path:
    """A GenEval image folder in the official layout (someone else's): NNNNN/metadata.jsonl + samples/0000.png."""
    from PIL import Image

    from harness.benchmarks.geneval.prompts import DEMO_METADATA

    for index in prompts:
        sub = folder / f"{index:05d}"
        (sub / "samples").mkdir(parents=True)
        (sub / "metadata.jsonl").write_text(json.dumps(DEMO_METADATA[index]))
        Image.new("RGB", (64, 64), (index * 9 % 255, 120, 30)).save(sub / "samples" / "0000.png")
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(capsys: pytest.CaptureFixture, rc: int) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


# -- --out that is a file, or a folder that is not ours ------------------------------------------------------
@pytest.fixture
def reports_runs(tmp_path: Path) -> tuple[Path, Path]:
    from synthetic_runs import write_synthetic_run

    rates = {t: 0.5 for t in ("single_object", "two_object", "counting", "colors", "position", "color_attr")}
    small = {t: 2 for t in rates}
    base = write_synthetic_run(tmp_path / "a", rates=rates, seed=1, prompts=small, images_per_prompt=1)
    new = write_synthetic_run(tmp_path / "b", rates=rates, seed=2, prompts=small, images_per_prompt=1)
    return base, new


@pytest.mark.parametrize("command", ["run", "score", "report", "compare", "merge"])
def test_out_that_is_a_file_is_a_one_line_error(command, tmp_path, reports_runs, capsys) -> None:
    target = tmp_path / "taken.txt"
    target.write_text("not a folder\n")
    images = official_layout(tmp_path / "imgs")
    base, new = reports_runs
    argv = {
        "run": ["run", "geneval", *TINY, *SMALL, "--out", str(target), "--store", str(tmp_path / "h.db")],
        "score": ["score", "geneval", "--images", str(images), *SCORE, "--out", str(target),
                  "--store", str(tmp_path / "h.db")],
        "report": ["report", str(base), "--out", str(target), "--store", str(tmp_path / "h.db")],
        "compare": ["compare", str(base), str(new), "--report", str(target), "--store", str(tmp_path / "h.db")],
        "merge": ["merge", str(target), "--store", str(tmp_path / "h.db")],
    }[command]
    err = one_line_error(capsys, main(argv))
    assert str(target) in err and "is a file" in err
    assert target.read_text() == "not a folder\n"


def test_run_refuses_a_folder_that_is_not_a_harness_run(tmp_path, capsys) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "summary.json").write_text('{"mine": true}\n')
    (theirs / "results.jsonl").write_text('{"line": 1}\n')
    (theirs / "notes.txt").write_text("keep me\n")
    before = snapshot(theirs)
    err = one_line_error(capsys, main(["run", "geneval", *TINY, *SMALL, "--out", str(theirs),
                                       "--store", str(tmp_path / "h.db")]))
    assert f"--out {theirs}: not empty" in err and "not a harness run" in err
    assert snapshot(theirs) == before and sorted(os.listdir(theirs)) == ["notes.txt", "results.jsonl", "summary.json"]


def test_score_in_place_keeps_foreign_results_but_scores_a_plain_image_folder(tmp_path, capsys) -> None:
    images = official_layout(tmp_path / "imgs")
    (images / "results.jsonl").write_text('{"from": "the official evaluator"}\n')
    before = snapshot(images)
    store = ["--store", str(tmp_path / "h.db")]
    err = one_line_error(capsys, main(["score", "geneval", "--images", str(images), *SCORE, *store]))
    assert "holds results.jsonl that the harness did not write" in err and "--out" in err
    assert snapshot(images) == before
    # elsewhere is fine, and so is in place once nothing foreign would be overwritten
    assert main(["score", "geneval", "--images", str(images), *SCORE, *store, "--out", str(tmp_path / "res")]) == 0
    assert (tmp_path / "res" / "summary.json").is_file()
    (images / "results.jsonl").unlink()
    assert main(["score", "geneval", "--images", str(images), *SCORE, *store]) == 0
    first = json.loads((images / "summary.json").read_text())
    assert first["images"] == 2
    assert main(["score", "geneval", "--images", str(images), *SCORE, *store]) == 0  # ours now: resumes
    assert json.loads((images / "summary.json").read_text()) == first


# -- one owner: the lock ------------------------------------------------------------------------------
def claim(run: Path, shard: Shard) -> None:
    """Own ``run`` for a moment (the lock is released at once)."""
    from harness.engine.runfolder import own_run_folder

    with own_run_folder(run, shard, stage="run"):
        pass


def test_lock_plain_shards_and_a_killed_holder(tmp_path) -> None:
    from harness.engine.runfolder import own_run_folder

    run = tmp_path / "run"
    plain, s0, s1 = Shard(), Shard(index=0, count=2, jobs=2), Shard(index=1, count=2, jobs=2)
    with own_run_folder(run, plain, stage="run"):
        for other in (plain, s0):
            with pytest.raises(HarnessError, match=rf"run folder {run} in use by PID {os.getpid()} \(host "):
                claim(run, other)
    with own_run_folder(run, s0, stage="run"), own_run_folder(run, s1, stage="run"):  # shards run side by side
        with pytest.raises(HarnessError, match=rf"in use by PID {os.getpid()} .*--shard 0/2"):
            claim(run, s0)  # the same shard twice
        with pytest.raises(HarnessError, match=r"in use by PID \d+ .*--shard [01]/2"):
            claim(run, plain)  # a whole-run process while shard jobs work
    claim(run, plain)  # everything released

    # a holder killed with SIGKILL leaves no lock behind (the kernel drops it)
    code = ("import sys, time; from pathlib import Path; from harness.engine.distributed import Shard; "
            "from harness.engine.runfolder import own_run_folder\n"
            "with own_run_folder(Path(sys.argv[1]), Shard(), stage='run'):\n"
            "    print('locked', flush=True); time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(HarnessError, match=rf"in use by PID {holder.pid} "):
            claim(run, plain)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    claim(run, plain)


def harness_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


def test_two_processes_on_one_out_one_wins_the_other_is_told_who(tmp_path) -> None:
    """Both start at once; the first to record an image is paused so that the race is certain to overlap."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = harness_cmd("run", "geneval", *TINY, *SMALL, "--out", "run", "--store", "h.db")
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    records = tmp_path / "run" / "records"
    deadline = time.time() + 240
    while time.time() < deadline and not list(records.glob("generate-*.jsonl")):
        assert any(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.05)
    first_pid = int(sorted(records.glob("generate-*.jsonl"))[0].name.split("-")[1])
    winner = next(p for p in procs if p.pid == first_pid)
    loser = next(p for p in procs if p is not winner)
    winner.send_signal(signal.SIGSTOP)  # holds the folder while the other one arrives
    try:
        _, loser_err = loser.communicate(timeout=240)
    finally:
        winner.send_signal(signal.SIGCONT)
    _, winner_err = winner.communicate(timeout=300)
    assert winner.returncode == 0, winner_err
    assert loser.returncode == 2, loser_err
    assert loser_err.count("\n") == 1, loser_err
    assert f"run folder run in use by PID {winner.pid} (" in loser_err and "pass another --out" in loser_err
    keys = [json.loads(line)["key"] for p in records.glob("generate-*.jsonl") for line in p.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 12  # no unit generated twice
    assert len(list(records.glob("generate-*.jsonl"))) == 1


def test_every_rank_of_a_launch_is_refused_without_hanging(tmp_path) -> None:
    """A folder held by another process: both ranks of a torchrun launch say so and exit; nothing is written."""
    from harness.engine.runfolder import own_run_folder

    run = tmp_path / "run"
    port = str(29500 + (os.getpid() + 7) % 1000)
    cmd = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", port, "-m", "harness", "run", "geneval",
           *TINY, *SMALL, "--out", "run", "--store", "h.db"]
    with own_run_folder(run, Shard(), stage="run"):
        out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert text.count(f"error: run folder run in use by PID {os.getpid()} (") == 2, text  # one line per rank
    assert sorted(os.listdir(run)) == [".harness-lock"]


# -- a scoring job writing elsewhere has its own store row ------------------------------------------------------
@pytest.fixture(scope="module")
def scored_run(tmp_path_factory) -> tuple[Path, str]:
    cwd = tmp_path_factory.mktemp("scored")
    out = subprocess.run(harness_cmd("run", "geneval", *TINY, "--limit", "1", "--images-per-prompt", "1",
                                     "--out", "run", "--store", "h.db"),
                         cwd=cwd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return cwd, json.loads((cwd / "run" / "summary.json").read_text())["run_id"]


def test_failed_scoring_elsewhere_leaves_the_run_row_and_report_works(scored_run, capsys, monkeypatch) -> None:
    cwd, run_id = scored_run
    monkeypatch.chdir(cwd)
    store = ["--store", "h.db"]
    with Store(cwd / "h.db") as db:
        before = db.runs().set_index("run_id").loc[run_id, ["benchmark", "out_dir", "status", "model", "config_json"]]
    # fails after it has started (unknown scorer option): the original run's row must not move
    one_line_error(capsys, main(["score", "geneval", "--images", "run/images", *SCORE, "--out", "other",
                                 "--options", "nonsense=1", *store]))
    with Store(cwd / "h.db") as db:
        runs = db.runs().set_index("run_id")
    assert runs.loc[run_id, ["benchmark", "out_dir", "status", "model", "config_json"]].tolist() == before.tolist()
    assert main(["report", run_id, "--out", "rep1", *store]) == 0
    capsys.readouterr()

    assert main(["score", "geneval", "--images", "run/images", *SCORE, "--out", "other", *store]) == 0
    summary = json.loads((cwd / "other" / "summary.json").read_text())
    job = summary["run_id"]
    assert job != run_id and job.startswith(run_id) and summary["scored_run"] == run_id
    with Store(cwd / "h.db") as db:
        runs = db.runs().set_index("run_id")
        assert runs.loc[run_id, ["benchmark", "out_dir", "status", "model", "config_json"]].tolist() == before.tolist()
        assert runs.loc[job, "out_dir"] == "other" and runs.loc[job, "status"] == "finished"
        assert json.loads(runs.loc[job, "config_json"])["scored_run"] == run_id
        assert len(db.scores(job)) == 6 and len(db.metrics(job))
    assert main(["report", run_id, "--out", "rep2", *store]) == 0
    assert main(["report", job, "--out", "rep3", *store]) == 0
    assert summary["overall"] == json.loads((cwd / "run" / "summary.json").read_text())["overall"]


# -- nothing read outside: scoring manifests and image folders -----------------------------------------------------
def test_merge_refuses_a_scoring_manifest_that_points_elsewhere(tmp_path, capsys) -> None:
    images = official_layout(tmp_path / "imgs")
    store = ["--store", str(tmp_path / "h.db")]
    assert main(["score", "geneval", "--images", str(images), *SCORE, *store]) == 0
    capsys.readouterr()
    manifest_path = next(images.glob("scoring-*.json"))
    manifest = json.loads(manifest_path.read_text())
    elsewhere = tmp_path / "elsewhere"  # prompt metadata only, not the scored images
    for index in ("00000", "00004"):
        (elsewhere / index).mkdir(parents=True)
        (elsewhere / index / "metadata.jsonl").write_text((images / index / "metadata.jsonl").read_text())
    before = snapshot(images)
    (stage, units), = manifest["stages"]
    for images_dir, names in ((os.path.relpath(elsewhere, images), units),
                              (str(elsewhere), units),
                              (".", [["k", "00000/samples/../../../elsewhere/x.png"]]),
                              (".", [["k", "../elsewhere/00000/samples/0000.png"]])):
        manifest_path.write_text(json.dumps(manifest | {"images_dir": images_dir, "stages": [[stage, names]]}))
        err = one_line_error(capsys, main(["merge", str(images), *store]))
        assert str(manifest_path) in err
        assert {k: v for k, v in snapshot(images).items() if not k.startswith("scoring-")} == \
            {k: v for k, v in before.items() if not k.startswith("scoring-")}


def test_score_refuses_a_prompt_folder_that_links_outside(tmp_path, capsys) -> None:
    images = official_layout(tmp_path / "imgs", prompts=(0,))
    official_layout(tmp_path / "outside", prompts=(4,))
    (images / "00004").symlink_to(tmp_path / "outside" / "00004")
    err = one_line_error(capsys, main(["score", "geneval", "--images", str(images), *SCORE,
                                       "--out", str(tmp_path / "res"), "--store", str(tmp_path / "h.db")]))
    assert "00004" in err and "outside" in err
    assert not (tmp_path / "res" / "summary.json").exists()
