"""Nightly judge-drift control on ImgEdit: a frozen anchor re-judged every night separates judge drift from
model regressions. The judge is the loopback OpenAI peer (real openai client, real HTTP)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PEER = Path(__file__).resolve().parents[1] / "peers" / "openai_server.py"
KEY = "sk-test-loopback"

CONFIG = """
store = "h.db"
report = "report"
[model]
name = "tiny"
[[benchmark]]
name = "imgedit"
args = ["--cases", "demo", "--threads", "1", "--seed", "{seed}", "--judge-base-url", "{url}",
        "--judge-cache", "judge-{seed}.db"]
anchor = "anchor"
anchor_args = ["--judge-base-url", "{url}"]
"""


@pytest.fixture(scope="module")
def peer():
    spec = importlib.util.spec_from_file_location("drift_openai_peer", PEER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def harness(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "OPENAI_API_KEY": KEY}, timeout=300)


def night(tmp_path: Path, seed: int, url: str) -> subprocess.CompletedProcess:
    (tmp_path / "n.toml").write_text(CONFIG.replace("{seed}", str(seed)).replace("{url}", url))
    return harness("nightly", "n.toml", cwd=tmp_path)


def test_judge_drift_is_told_apart_from_a_model_regression(peer, tmp_path):
    def harsher(body, images):  # the judge got stricter overnight: every score one lower
        return re.sub(r": (\d)$", lambda m: f": {max(1, int(m.group(1)) - 1)}",
                      peer.default_answer(body, images), flags=re.M)

    with peer.serve(api_key=KEY) as judge:
        made = harness("run", "imgedit", "--model", "tiny", "--cases", "demo", "--threads", "1", "--seed", "7",
                       "--out", "anchor", "--store", "anchor-store.db", "--no-progress", "--judge-base-url", judge.url,
                       "--judge-cache", "anchor.db", cwd=tmp_path)
        assert made.returncode == 0, made.stderr
        first = night(tmp_path, 42, judge.url)
        assert first.returncode == 0, first.stderr
        assert "Scorer stable on the frozen anchor" in first.stdout
    with peer.serve(api_key=KEY, answer=harsher) as judge:
        second = night(tmp_path, 43, judge.url)
    assert second.returncode == 0, second.stderr  # not gated: the judge moved, not (only) the model
    assert "JUDGE DRIFT on the frozen anchor (imgedit_overall" in second.stdout
    assert "for baseline imgedit-" in second.stdout
