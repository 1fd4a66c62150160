"""Scale-out for real on this CPU: `accelerate launch`/torchrun with 2 gloo ranks, `--shard i/n`, `harness merge`.

The tiny model and tiny scorers are built in code; every process is a real `python -m harness` child.
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

import pytest

from harness.core.errors import HarnessError
from harness.engine.distributed import Shard, current_shard, parse_shard

BIN = Path(sys.executable).parent
ARGS = ["run", "geneval", "--model", "tiny", "--prompts", "demo", "--detector", "tiny", "--clip", "tiny",
        "--threads", "1", "--no-progress", "--limit", "1", "--images-per-prompt", "2", "--batch-size", "2",
        "--score-batch-size", "2"]


def env() -> dict[str, str]:
    # a private rendezvous port per test run, so parallel CI jobs never meet
    return {**os.environ, "PYTHONUNBUFFERED": "1", "MASTER_PORT": str(29500 + os.getpid() % 1000)}


def sh(cmd: list[str], cwd: Path, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env(), timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {out.returncode}\n{out.stdout}\n{out.stderr}")
    return out


def harness(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


def accelerate(*args: str, n: int = 2) -> list[str]:
    # `accelerate launch --cpu` starts a single process; the multi-process launcher works on CPU (gloo)
    return [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", str(n), "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", env()["MASTER_PORT"],
            "-m", "harness", *args]


def torchrun(*args: str, n: int = 2) -> list[str]:
    return [str(BIN / "torchrun"), "--nproc_per_node", str(n), "--master_port", env()["MASTER_PORT"], "-m",
            "harness", *args]


def pngs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("single")
    sh(harness(*ARGS, "--out", "run"), cwd)
    return cwd / "run"


def test_parse_and_compose_shards(monkeypatch):
    assert parse_shard("2/8") == (2, 8)
    for bad in ("8/8", "x", "1/0", "-1/2"):
        with pytest.raises(HarnessError, match="--shard"):
            parse_shard(bad)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    shard = current_shard("1/3")
    assert (shard.index, shard.count, shard.jobs, shard.finalizes) == (1, 3, 3, False)
    assert current_shard(None) == Shard() and Shard().finalizes


def test_two_ranks_give_byte_identical_images_and_summary(single, tmp_path):
    out = sh(accelerate(*ARGS, "--out", "run"), tmp_path)
    run = tmp_path / "run"
    assert pngs(run / "images") == pngs(single / "images")
    assert (run / "summary.json").read_text() == (single / "summary.json").read_text()
    files = sorted("-".join(p.name.split("-")[:2]) for p in (run / "records").glob("generate-*"))
    assert files == ["generate-r0of2", "generate-r1of2"]  # one record file per rank, no gathering
    assert out.stdout.count("GenEval-tiny-random") == 1  # only rank 0 reports


def count_lines(folder: Path, stage: str) -> int:
    return sum(len(p.read_text().splitlines()) for p in folder.glob(f"{stage}-*.jsonl")) if folder.exists() else 0


def test_kill_a_rank_mid_run_then_resume_on_one_process(single, tmp_path):
    proc = subprocess.Popen(torchrun(*ARGS, "--out", "run"), cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    records = tmp_path / "run" / "records"
    deadline = time.time() + 180
    while count_lines(records, "generate") < 4 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    ranks = subprocess.run(["pgrep", "-f", "-P", str(proc.pid), "harness"], capture_output=True, text=True)
    victim = int(ranks.stdout.split()[-1])
    os.kill(victim, signal.SIGKILL)  # one rank dies; the launcher tears the other down
    proc.wait(timeout=120)
    assert proc.returncode != 0
    done = count_lines(records, "generate")
    assert 4 <= done < 12, done
    sh(harness(*ARGS, "--out", "run"), tmp_path)  # resume with a different world size: 1
    assert pngs(tmp_path / "run" / "images") == pngs(single / "images")
    assert (tmp_path / "run" / "summary.json").read_text() == (single / "summary.json").read_text()
    keys = [json.loads(line)["key"] for p in records.glob("generate-*") for line in p.read_text().splitlines()
            if line.endswith("}")]
    assert len(keys) == len(set(keys)) == 12


def test_independent_shards_then_merge_reports_missing_units_exactly(single, tmp_path):
    out = sh(harness(*ARGS, "--out", "run", "--shard", "0/2"), tmp_path)
    assert "harness merge" in out.stdout
    merged = sh(harness("merge", "run"), tmp_path, check=False)
    assert merged.returncode == 3
    # batches of 2 images in plan order: shard 0 has batches 0, 2, 4 = prompts 00000, 00008, 00016
    missing = ["00004/samples/0000.png", "00004/samples/0001.png", "00012/samples/0000.png",
               "00012/samples/0001.png", "00020/samples/0000.png", "00020/samples/0001.png"]
    assert f"6 of 12 images not generated yet ({', '.join(missing)})" in merged.stderr
    assert not (tmp_path / "run" / "summary.json").exists()

    sh(harness(*ARGS, "--out", "run", "--shard", "1/2"), tmp_path)
    merged = sh(harness("merge", "run"), tmp_path)  # all generated, nothing scored: says so, exit 0
    assert "every image is generated; not scored yet: `harness score geneval --images run/images`" in merged.stdout
    assert not (tmp_path / "run" / "summary.json").exists()
    score = ["score", "geneval", "--images", "run/images", "--detector", "tiny", "--clip", "tiny", "--no-progress",
             "--score-batch-size", "2", "--threads", "1"]
    sh(harness(*score, "--shard", "1/2"), tmp_path)
    merged = sh(harness("merge", "run"), tmp_path, check=False)
    assert merged.returncode == 3 and "6 of 12 images not scored yet" in merged.stderr
    sh(harness(*score, "--shard", "0/2"), tmp_path)
    sh(harness("merge", "run"), tmp_path)
    assert summary(tmp_path / "run") == summary(single)
    assert pngs(tmp_path / "run" / "images") == pngs(single / "images")


def test_truncated_record_line_is_repaired_and_its_unit_rerun(single, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(single, run)
    gen = sorted((run / "records").glob("generate-*"))[0]
    data = gen.read_bytes()
    gen.write_bytes(data[: len(data) - 40])  # cut mid-line: the last unit's record is lost
    merged = sh(harness("merge", "run"), tmp_path, check=False)
    assert merged.returncode == 3
    assert "1 of 12 images not generated yet (00020/samples/0001.png)" in merged.stderr
    assert gen.read_bytes().endswith(b"\n") and gen.read_bytes().count(b"\n") == 11  # only the partial line dropped
    before = (run / "images" / "00020" / "samples" / "0001.png").read_bytes()
    sh(harness(*ARGS, "--out", "run"), tmp_path)
    assert (run / "images" / "00020" / "samples" / "0001.png").read_bytes() == before
    assert summary(run) == summary(single)
    sh(harness("merge", "run"), tmp_path)  # merging a complete run again is harmless
    assert summary(run) == summary(single)


def test_scoring_as_a_separate_stage_on_two_ranks(single, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(single, run, ignore=shutil.ignore_patterns("score-*", "scoring-*", "results.jsonl",
                                                               "summary.json"))
    assert not list((run / "records").glob("score-*"))
    score = ["score", "geneval", "--images", "run/images", "--detector", "tiny", "--clip", "tiny", "--no-progress",
             "--score-batch-size", "2", "--threads", "1"]
    sh(accelerate(*score), tmp_path)
    assert len(list((run / "records").glob("score-*"))) == 2  # one file per rank
    assert summary(run) == summary(single)
