"""A benchmark plugin gets the whole harness without a line changed outside it.

``tests/plugins/brightness`` is a real distribution (a package plus its ``.dist-info`` with an entry point in
``harness.benchmarks``), put on ``PYTHONPATH`` the way pip would leave it in site-packages. Every step is a
real ``python -m harness`` process: run, kill -9 and resume, score, merge of ``--shard`` jobs, a 2-rank
torchrun launch, report, compare with ``--fail-on-regression``, and the nightly job.
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

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "brightness"
BIN = Path(sys.executable).parent
RUN = ["run", "brightness", "--model", "tiny", "--threads", "1", "--no-progress"]


def env() -> dict[str, str]:
    path = os.pathsep.join([str(PLUGIN), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "MASTER_PORT": str(29700 + os.getpid() % 200)}


def harness(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env(), capture_output=True,
                         text=True, timeout=300)
    if check and out.returncode != 0:
        raise AssertionError(f"harness {' '.join(args)} -> {out.returncode}\n{out.stdout}\n{out.stderr}")
    return out


def summary(folder: Path) -> dict:
    data = json.loads((folder / "summary.json").read_text())
    return {k: v for k, v in data.items() if k not in ("run_id", "scored_run")}


def records(folder: Path, stage: str = "generate") -> list[dict]:
    return [json.loads(line) for p in sorted((folder / "records").glob(f"{stage}-*.jsonl"))
            for line in p.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("plugin")
    out = harness(cwd, *RUN, "--out", "a", "--store", "h.db", "--tolerance", "1")
    assert "brightness" in out.stdout and "summary.json" in out.stdout
    return cwd


def test_listed_as_a_plugin_with_its_distribution(base):
    out = harness(base, "list", "benchmarks")
    line = next(x for x in out.stdout.splitlines() if x.startswith("brightness"))
    assert "plugin from harness-brightness 0.1.0" in line


def test_run_writes_results_summary_store_and_provenance(base):
    s = json.loads((base / "a" / "summary.json").read_text())
    assert s["benchmark"] == "brightness" and s["overall"] == 1.0 and set(s["tags"]) == {"dark", "mid", "bright"}
    assert s["provenance"]["benchmark"]["distribution"] == "harness-brightness"
    assert len((base / "a" / "results.jsonl").read_text().splitlines()) == 10  # 5 prompts x 2 samples
    import sqlite3

    rows = sqlite3.connect(base / "h.db").execute("SELECT benchmark, status FROM runs").fetchall()
    assert ("brightness", "finished") in rows


def test_kill_9_then_resume_loses_and_repeats_nothing(base):
    args = [*RUN, "--out", "k", "--store", "k.db", "--samples", "6"]
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=base, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if (base / "k" / "records").is_dir() and records(base / "k"):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(records(base / "k"))
    assert 0 < done_before < 30, done_before
    harness(base, *args)
    keys = [r["key"] for r in records(base / "k")]
    assert len(keys) == len(set(keys)) == 30
    harness(base, *RUN, "--out", "k-ref", "--store", "k.db", "--samples", "6")
    assert summary(base / "k") == summary(base / "k-ref")


def test_shards_then_merge_and_two_ranks_equal_one_process(base):
    for i in range(2):
        out = harness(base, *RUN, "--out", "s", "--store", "s.db", "--shard", f"{i}/2")
        assert "harness merge" in out.stdout
    assert "not scored yet" in harness(base, "merge", "s", "--store", "s.db").stdout
    for i in range(2):
        harness(base, "score", "brightness", "--images", "s/images", "--store", "s.db", "--tolerance", "1",
                "--shard", f"{i}/2")
    merged = harness(base, "merge", "s", "--store", "s.db")
    assert "brightness" in merged.stdout
    assert summary(base / "s") == summary(base / "a")
    launch = subprocess.run([str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", env()["MASTER_PORT"],
                             "-m", "harness", *RUN, "--out", "t", "--store", "t.db", "--tolerance", "1"],
                            cwd=base, env=env(), capture_output=True, text=True, timeout=300)
    assert launch.returncode == 0, launch.stderr
    assert {p.name.split("-")[1] for p in (base / "t" / "records").glob("generate-*.jsonl")} == {"r0of2", "r1of2"}
    assert summary(base / "t") == summary(base / "a")


def test_score_compare_gates_and_report(base):
    harness(base, "score", "brightness", "--images", "a/images", "--out", "strict", "--store", "h.db",
            "--tolerance", "0")
    assert json.loads((base / "strict" / "summary.json").read_text())["overall"] == 0.0
    refused = harness(base, "compare", "a", "strict", "--store", "h.db", check=False)
    assert refused.returncode == 2 and "--intersection" in refused.stderr  # other scorer settings
    gated = harness(base, "compare", "a", "strict", "--intersection", "--fail-on-regression", "--store", "h.db",
                    check=False)
    assert gated.returncode == 1 and "regression flagged in: brightness_overall" in gated.stdout
    harness(base, "report", "a", "strict", "--out", "rep", "--store", "h.db")
    page = (base / "rep" / "index.html").read_text()
    ids = [json.loads((base / name / "summary.json").read_text())["run_id"] for name in ("a", "strict")]
    assert all(run_id in page for run_id in ids) and "<th class=l>brightness</th>" in page
    assert "| overall | 1.000 | 0.000 |" in (base / "rep" / "summary.md").read_text()


def test_nightly_runs_compares_and_reports_the_plugin(base):
    def night(seed: int) -> subprocess.CompletedProcess:
        (base / "n.toml").write_text(
            'store = "n.db"\nreport = "nrep"\n[model]\nname = "tiny"\n'
            f'[[benchmark]]\nname = "brightness"\nconfig = {{ tolerance = 1.0, seed = {seed} }}\n'
            'args = ["--threads", "1"]\n')
        return harness(base, "nightly", "n.toml")

    first = night(0)
    assert "brightness: 1.000 (no comparable baseline yet" in first.stdout
    second = night(1)
    assert "brightness: 1.000 vs 1.000 for baseline brightness-" in second.stdout
    assert "no regression flagged" in second.stdout and (base / "nrep" / "index.html").is_file()
