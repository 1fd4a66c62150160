"""`harness run dpg` / `harness score dpg` end to end on the tiny model and the tiny VQA model, through the CLI.

Real ``python -m harness`` processes (so ``kill -9`` is a real kill); the tiny DreamLite pipeline and the tiny
ViLT are built in code and loaded through ``from_pretrained``. The run's official 2×2 tiles are then scored by
the official scorer's rules (``conftest.run_official``) with the same tiny VQA model asked one question per
call, as the official scorer asks mPLUG, and must give the run's parity numbers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.benchmarks.dpg.demo import DEMO, demo_csv
from harness.store import Store

TINY = ["--model", "tiny", "--prompts", "demo", "--vqa", "tiny", "--threads", "1", "--no-progress"]
SCORE = ["--prompts", "demo", "--vqa", "tiny", "--threads", "1", "--no-progress"]


def harness(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True, env=env,
                         timeout=300)
    if check and out.returncode != 0:
        raise AssertionError(f"harness {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


def summary(folder: Path) -> dict:
    data = json.loads((folder / "summary.json").read_text())
    return {k: v for k, v in data.items() if k not in ("run_id", "scored_run", "provenance")}


def records(folder: Path, stage: str) -> list[dict]:
    return [json.loads(line) for p in sorted((folder / "records").glob(f"{stage}-*.jsonl"))
            for line in p.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    cwd = tmp_path_factory.mktemp("dpg")
    return cwd, harness("run", "dpg", *TINY, "--out", "run", "--store", "h.db", cwd=cwd)


def test_run_writes_singles_tiles_results_summary_and_store(reference) -> None:
    from PIL import Image, ImageChops

    cwd, out = reference
    run = cwd / "run"
    assert "DPG-Bench-tiny-random" in out.stdout and "meaningless" in out.stdout and "L1 entity" in out.stdout
    assert sorted(p.name for p in (run / "images").iterdir()) == sorted(DEMO)
    assert sorted(p.name for p in (run / "tiles").iterdir()) == sorted(f"{i}.png" for i in DEMO)  # nothing else
    seeds = {(r["item_id"], r["sample_index"]): r["seed"] for r in records(run, "generate")}
    assert len(seeds) == 24 and all(seed == 42 + k for (_, k), seed in seeds.items())
    with Image.open(run / "tiles" / "count0.png") as tile:
        assert tile.size == (128, 128)
        for k, box in enumerate([(0, 0, 64, 64), (64, 0, 128, 64), (0, 64, 64, 128), (64, 64, 128, 128)]):
            with Image.open(run / "images" / "count0" / f"{k}.png") as single:
                assert ImageChops.difference(tile.crop(box), single.convert("RGB")).getbbox() is None
    s = json.loads((run / "summary.json").read_text())
    results = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]
    assert [r["item_id"] for r in results] == list(DEMO) and s["mode"] == "strict"
    assert s["overall"] == pytest.approx(sum(r["score"] for r in results) / 6)
    assert s["tiles"]["resolution"] == 64 and "--resolution 64 --pic-num 4" in s["tiles"]["official_command"]
    assert s["prompt_set"]["name"] == "demo" and s["scorer"]["scorer"] == "vqa-tiny"
    assert s["parity"]["dropped_files"][0]["file"] == "tiles/dense0.png"  # its first row is the skipped row 0
    assert s["provenance"]["vqa"]["target"] == "harness.scorers.vqa:TinyVQA"
    with Store(cwd / "h.db") as store:
        assert len(store.samples(s["run_id"])) == 24 and len(store.scores(s["run_id"])) == 24
        metrics = store.metrics(s["run_id"])
        assert set(metrics["subset"]) >= {"overall", "L1:entity", "L2:entity - whole"}


def test_the_official_rules_rescore_the_tiles_to_the_parity_numbers(reference, official_dpg, tmp_path: Path) -> None:
    from harness.scorers.vqa import TinyVQA

    cwd, _ = reference
    tiny = TinyVQA(device="auto")  # as the run: `--device auto` reaches the VQA model

    class OneQuestion:  # the official scorer's call: one question per call
        calls = 0

        def vqa(self, image, question: str) -> str:
            OneQuestion.calls += 1
            return tiny.answer(image, [question])[0]

    (tmp_path / "dpg_bench.csv").write_bytes(demo_csv())
    official = official_dpg(cwd / "run" / "tiles", tmp_path / "dpg_bench.csv", 64, 4, OneQuestion())
    parity = json.loads((cwd / "run" / "summary.json").read_text())["parity"]
    assert official["failed"] == ["dense0.png"] and OneQuestion.calls > 100
    assert parity["overall"] == pytest.approx(official["overall"], abs=1e-9)
    assert parity["l1"] == pytest.approx(official["l1"], abs=1e-9)
    assert parity["l2"] == pytest.approx(official["l2"], abs=1e-9)
    text = (cwd / "run" / "dpg-bench_results.txt").read_text()
    assert "Model: tiles" in text and f"DPG-Bench score: {parity['overall']}" in text


def test_kill_9_then_resume_gives_the_same_results_and_tiles(reference) -> None:
    cwd, _ = reference
    args = ["run", "dpg", *TINY, "--out", "k", "--store", "k.db"]
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if (cwd / "k" / "records").is_dir() and records(cwd / "k", "generate"):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = len(records(cwd / "k", "generate"))
    assert 0 < before < 24, before
    harness(*args, cwd=cwd)
    keys = [r["key"] for r in records(cwd / "k", "generate")]
    assert len(keys) == len(set(keys)) == 24
    assert summary(cwd / "k") == summary(cwd / "run")
    for item in DEMO:
        tile = f"tiles/{item}.png"
        assert (cwd / "k" / tile).read_bytes() == (cwd / "run" / tile).read_bytes()
    tiles = cwd / "k" / "tiles" / "text0.png"
    stamp = tiles.stat().st_mtime_ns
    harness("merge", "k", "--store", "k.db", cwd=cwd)  # finishing again keeps the tiles it already wrote
    assert tiles.stat().st_mtime_ns == stamp
    tiles.write_bytes(b"damaged")
    harness("merge", "k", "--store", "k.db", cwd=cwd)
    assert tiles.read_bytes() == (cwd / "run" / "tiles" / "text0.png").read_bytes()
    compared = harness("compare", "run", "k", "--store", "k.db", cwd=cwd)
    assert "dpg_overall" in compared.stdout and "regression" in compared.stdout


def test_scoring_the_official_tile_folder_matches_the_run(reference) -> None:
    cwd, _ = reference
    refused = harness("score", "dpg", "--images", "run/tiles", *SCORE, "--out", "s", cwd=cwd, check=False)
    assert refused.returncode == 2 and "--resolution R is required" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    out = harness("score", "dpg", "--images", "run/tiles", *SCORE, "--resolution", "64", "--parity", "--out", "s",
                  "--store", "s.db", cwd=cwd)
    assert "mode: parity" in out.stdout
    run, tiles = json.loads((cwd / "run" / "summary.json").read_text()), json.loads((cwd / "s" / "summary.json")
                                                                                    .read_text())
    assert tiles["overall"] == tiles["parity"]["overall"] == pytest.approx(run["parity"]["overall"], abs=1e-9)
    assert tiles["strict"]["overall"] == pytest.approx(run["strict"]["overall"], abs=1e-9)
    assert tiles["strict"]["l2"] == pytest.approx(run["strict"]["l2"], abs=1e-9) and tiles["resolution"] == 64
    assert not (cwd / "s" / "tiles").exists()  # a tile folder is scored as it is


def test_report_shows_both_modes_and_the_published_numbers(reference) -> None:
    cwd, _ = reference
    harness("report", "run", "--out", "rep", "--store", "h.db", cwd=cwd)
    page = (cwd / "rep" / "index.html").read_text()
    assert "DPG-Bench: dpg-" in page and "DreamLite (0.39B)" in page and "85.8" in page and "TokenFlow" in page
    assert "<th>strict</th><th>parity</th>" in page and "tiles/count0.png" in page
    assert "| L1 entity |" in (cwd / "rep" / "summary.md").read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["--vqa", "nope"], "unknown scorer 'vqa-nope'"),
    (["--vqa", "mplug"], "--vqa mplug needs ModelScope"),
    (["--images-per-prompt", "5"], "--images-per-prompt 5: expected an integer from 1 to 4"),
    (["--prompts", "no-such-folder"], "--prompts no-such-folder: no dpg_bench.csv there"),
    (["--vqa-args", "weights=/no/such"], "--vqa-args: unknown option 'weights' for vqa 'vqa-tiny'"),
])
def test_bad_input_is_one_line_before_any_work(tmp_path: Path, args: list[str], message: str) -> None:
    if "mplug" in args and importlib.util.find_spec("modelscope") is not None:
        pytest.skip("ModelScope is installed here")
    out = harness("run", "dpg", *TINY, *args, "--out", "m", cwd=tmp_path, check=False)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and not (tmp_path / "m").exists()
