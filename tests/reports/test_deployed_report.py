"""Deployed vs reference in ``harness report``: phone runs of a sweep's variants next to the host run of the same
prompts and seeds, with latency from the generation records, the paired comparison, the Pareto plot and image
pairs. The phone runs use ``backend=local`` (the same binary on this host; still measured per image)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.reports.deployed import p90, pareto_front
from tests.device.conftest import write_gen_sweep

pytestmark = pytest.mark.slow

RUN = ["run", "geneval", "--prompts", "demo", "--tags", "single_object,counting", "--limit", "2",
       "--images-per-prompt", "2", "--detector", "tiny", "--clip", "tiny", "--no-progress", "--store", "h.db"]


def harness(cwd: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=600, env=dict(os.environ))
    assert out.returncode == 0, f"harness {' '.join(args)} -> {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, str, str]:
    cwd = tmp_path_factory.mktemp("deployed")
    fast = write_gen_sweep(cwd / "fast", per_image_ms=5, variant="int8-gpu", size="128x128")
    slow = write_gen_sweep(cwd / "slow", per_image_ms=150, variant="fp16-cpu", size="128x128")
    for name, sweep in (("fast", fast), ("slow", slow)):
        harness(cwd, *RUN, "--model", "phone", "--model-args", f"sweep={sweep},backend=local,workdir={cwd / 'wd'}",
                "--out", f"runs/{name}")
    harness(cwd, *RUN, "--model", "tiny", "--out", "runs/ref")
    harness(cwd, "report", "runs/fast", "runs/slow", "runs/ref", "--out", "rep", "--store", "h.db")
    return cwd, (cwd / "rep" / "index.html").read_text(), (cwd / "rep" / "summary.md").read_text()


def test_latency_of_every_run_from_its_generation_records(report):
    _, page, markdown = report
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in markdown.splitlines()
            if line.startswith("| geneval-")}
    assert len(rows) == 3
    where = {r[2]: r for r in rows.values()}
    host = socket.gethostname()
    fast, slow = where[f"local:{host} (local) int8-gpu"], where[f"local:{host} (local) fp16-cpu"]
    assert float(slow[4]) >= 0.15 > float(fast[4])  # 150 ms vs 5 ms per image on the "device"
    assert fast[3] == slow[3] == "8/8" and float(slow[5]) >= float(slow[4])  # p90 >= median
    ref = where["host (the engine's wall time per image)"]
    assert ref[1] == "tiny" and ref[6] == "–"  # no peak memory measured on the host
    assert "<h2>Deployed vs reference: geneval</h2>" in page


def test_each_deployed_run_sits_next_to_the_reference_with_the_paired_comparison(report):
    _, page, markdown = report
    assert page.count("vs reference geneval-") == 2
    for tag in ("overall", "single_object", "counting"):
        row = next(line for line in markdown.splitlines() if line.startswith(f"| {tag} |") and "[" in line)
        cells = row.split(" | ")
        assert re.match(r"^[+-]\d\.\d{3}$", cells[3]) and cells[4].startswith("[") and cells[6].strip(" |")
    assert "Pareto front" in page and "<svg" in page


def test_image_pairs_link_the_phone_image_and_the_host_image_of_the_same_unit(report):
    cwd, page, _ = report
    pairs = re.findall(r"<p>(\d{5}) #(\d) seed (\d+)</p><div class='cell '><img loading=lazy src='([^']+)'.*?"
                       r"<div class='cell '><img loading=lazy src='([^']+)'", page)
    assert len(pairs) == 2 * 8
    for item, sample, seed, mine, theirs in pairs:
        assert int(seed) == 42 + int(sample)
        a, b = (cwd / "rep" / mine).resolve(), (cwd / "rep" / theirs).resolve()
        assert a.is_file() and b.is_file() and a.parts[-3:] == b.parts[-3:] == (item, "samples", f"000{sample}.png")
        assert a.parts[-5] in ("fast", "slow") and b.parts[-5] == "ref"


def test_pareto_front_and_p90():
    points = [(1.0, 0.5), (2.0, 0.7), (1.5, 0.4), (3.0, 0.7), (0.5, 0.1)]
    assert pareto_front(points) == [4, 0, 1]
    assert p90([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) == pytest.approx(9.1) and p90([]) is None
