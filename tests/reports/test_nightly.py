"""`harness nightly CONFIG` end to end on the tiny model: first night becomes the baseline, second compares."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.core.errors import HarnessError
from harness.nightly import load_config

CONFIG = """
store = "h.db"
report = "report"

[model]
name = "tiny"
args = ""

[[benchmark]]
name = "geneval"
args = ["--prompts", "demo", "--limit", "1", "--images-per-prompt", "2", "--detector", "tiny", "--clip", "tiny",
        "--seed", "{seed}", "--threads", "1"]
baseline = "last-good"
"""


def nightly(tmp_path, seed: int) -> subprocess.CompletedProcess:
    (tmp_path / "nightly.toml").write_text(CONFIG.replace("{seed}", str(seed)))
    return subprocess.run([sys.executable, "-m", "harness", "nightly", "nightly.toml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_two_nights(tmp_path):
    first = nightly(tmp_path, 42)
    assert first.returncode == 0, first.stderr
    assert "no comparable baseline yet" in first.stdout and "Verdict: no regression flagged" in first.stdout
    second = nightly(tmp_path, 43)
    assert second.returncode == 0, second.stderr
    assert "for baseline geneval-" in second.stdout and "Δ" in second.stdout
    assert (tmp_path / "report" / "index.html").is_file()
    page = (tmp_path / "report" / "index.html").read_text()
    assert page.count("Images: geneval-") == 2  # baseline and tonight side by side


def test_config_errors_name_the_field(tmp_path):
    path = tmp_path / "n.toml"
    path.write_text('[model]\nname = "tiny"\n')
    with pytest.raises(HarnessError, match=r"n\.toml: at least one \[\[benchmark\]\]"):
        load_config(path)
    path.write_text("model = [")
    with pytest.raises(HarnessError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(HarnessError, match="no such nightly config"):
        load_config(tmp_path / "missing.toml")
