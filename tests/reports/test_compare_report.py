"""Paired statistics, run comparison gating, and the HTML/Markdown report on synthetic and real runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from synthetic_runs import write_synthetic_run

from harness.core.errors import HarnessError
from harness.reports.compare import latency, mcnemar_exact, paired_mean, stratified_paired, verdict
from harness.reports.html import build_report
from harness.reports.regression import compare_runs, holm
from harness.reports.runs import load_run

RATES = {"single_object": 0.95, "two_object": 0.7, "counting": 0.6, "colors": 0.8, "position": 0.25,
         "color_attr": 0.45}


def test_mcnemar_exact_known_values():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)  # 2 * 0.5**6
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)


def test_verdict_needs_size_and_significance():
    assert verdict(-0.05, True, 0.01, True) == "regression"
    assert verdict(-0.05, False, 0.01, True) == "not significant"
    assert verdict(-0.005, True, 0.01, True) == "not significant"  # significant but below threshold
    assert verdict(0.05, True, 0.01, True) == "improvement"
    assert verdict(0.05, True, 0.01, False) == "regression"  # lower is better (latency)
    assert verdict(0.0, True, 0.01, True) == "same"


def test_holm():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_stratified_paired_detects_flips_and_not_noise():
    base = {f"{i:05d}": {f"{k}.png": (i + k) % 3 != 0 for k in range(4)} for i in range(100)}
    tags = {p: "single_object" if int(p) < 50 else "counting" for p in base}
    same = stratified_paired("geneval_overall", base, base, tags)
    assert same.delta == 0 and same.verdict == "same"
    worse = {p: ({s: False for s in v} if int(p) % 4 == 0 else dict(v)) for p, v in base.items()}
    c = stratified_paired("geneval_overall", base, worse, tags)
    assert c.delta < -0.1 and c.verdict == "regression" and c.ci95[1] < 0


def test_paired_mean_and_latency():
    base = {str(i): 3.0 + (i % 5) * 0.2 for i in range(200)}
    assert paired_mean("judge", base, {k: v - 0.3 for k, v in base.items()}).verdict == "regression"
    assert paired_mean("judge", base, dict(base)).verdict == "same"
    assert paired_mean("judge", base, {}).verdict == "not comparable"
    few = {"a": 4.0, "b": 4.0}
    assert paired_mean("judge", few, {"a": 3.0, "b": 3.0}).verdict == "not significant"  # 2 pairs prove nothing
    import random

    rng = random.Random(0)
    a = [100 + rng.gauss(0, 2) for _ in range(60)]
    assert latency("unet_ms", a, [x * 1.2 for x in a]).verdict == "regression"
    assert latency("unet_ms", a, [x + rng.gauss(0, 2) for x in a]).verdict in ("not significant", "same")
    assert latency("unet_ms", a[:1], a).verdict == "not comparable"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    base = write_synthetic_run(root / "base", rates=RATES, seed=1)
    aa = write_synthetic_run(root / "aa", rates=RATES, seed=2)
    planted = write_synthetic_run(root / "planted", rates=RATES, seed=3, base=base, flip={"colors": 0.15})
    return root, base, aa, planted


def test_a_a_has_no_false_regression_and_planted_is_flagged(runs):
    root, base, _, planted = runs
    false_flags = 0
    for rep in range(20):
        other = write_synthetic_run(root / f"aa{rep}", rates=RATES, seed=100 + rep)
        comps, _ = compare_runs(load_run(str(base)), load_run(str(other)))
        false_flags += sum(c.verdict == "regression" for c in comps)
    assert false_flags == 0
    comps, _ = compare_runs(load_run(str(base)), load_run(str(planted)))
    flagged = {c.metric for c in comps if c.verdict == "regression"}
    assert "geneval_colors" in flagged


def test_incomparable_runs_are_refused_or_intersected(runs, tmp_path):
    _, base, _, _ = runs
    other = write_synthetic_run(tmp_path / "fewer", rates=RATES, seed=5,
                                prompts={"single_object": 80, "two_object": 50})
    with pytest.raises(HarnessError, match="different prompts"):
        compare_runs(load_run(str(base)), load_run(str(other)))
    comps, notes = compare_runs(load_run(str(base)), load_run(str(other)), intersection=True)
    assert any("left out" in n for n in notes) and {c.metric for c in comps} == {
        "geneval_overall", "geneval_single_object", "geneval_two_object"}
    hf = write_synthetic_run(tmp_path / "hf", rates=RATES, seed=6, label="GenEval (official detector)")
    with pytest.raises(HarnessError, match="not comparable"):
        compare_runs(load_run(str(base)), load_run(str(hf)))


def test_report_shows_tables_grids_missing_images_and_published(runs, tmp_path):
    _, base, aa, _ = runs
    html_path, md_path = build_report([load_run(str(base)), load_run(str(aa))], tmp_path / "rep", grid_limit=5)
    page = html_path.read_text()
    assert page.count("class=prompt") == 10 and "missing" in page and "still counted" in page
    assert "single_object" in page and "SnapGen" in page and "DreamLite" in page
    md = md_path.read_text()
    assert "| overall |" in md and "missing" in md


def test_cli_compare_fail_on_regression_and_report(runs, tmp_path):
    _, base, _, planted = runs
    out = subprocess.run([sys.executable, "-m", "harness", "compare", str(base), str(planted), "--fail-on-regression",
                          "--report", str(tmp_path / "cmp")], capture_output=True, text=True)
    assert out.returncode == 1 and "regression flagged in:" in out.stdout and "geneval_colors" in out.stdout
    assert (tmp_path / "cmp" / "index.html").is_file()
    out = subprocess.run([sys.executable, "-m", "harness", "compare", str(base), str(base), "--fail-on-regression"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "no regression flagged" in out.stdout
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "summary.json").write_text("{oops")
    out = subprocess.run([sys.executable, "-m", "harness", "compare", str(base), str(bad)], capture_output=True,
                         text=True)
    assert out.returncode == 2 and "summary.json: not valid JSON" in out.stderr
    json.loads((base / "summary.json").read_text())


def test_report_in_headless_chromium(runs, tmp_path):
    """Render the page in Debian's chromium: screenshot taken, tables and grids (with real images) present."""
    import os
    import shutil

    from PIL import Image

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium for this test")
        pytest.skip("chromium not installed (apt-get install chromium)")
    _, base, aa, _ = runs
    for k in range(4):  # real images for the first prompt of the base run
        path = base / "images" / "00000" / "samples" / f"{k:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), (40 * k, 120, 200)).save(path)
    html_path, _ = build_report([load_run(str(base)), load_run(str(aa))], tmp_path / "rep", grid_limit=3)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1200,1600", html_path.as_uri()],
                   capture_output=True, timeout=120, check=True)
    image = Image.open(shot)
    colors = image.convert("L").getcolors(maxcolors=100000) or []
    assert image.size == (1200, 1600) and len(colors) > 20  # not a blank page
    dom = subprocess.run([chromium, *flags, "--dump-dom", html_path.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert dom.count('class="prompt"') == 6 and dom.count("<table") >= 3  # runs, GenEval per tag, published
    assert dom.count("<img") == 4 and "missing" in dom
