"""Detectors are scorers: construction checks options only, resolve() checks in seconds that the weights can be
had (one line naming the fix, nothing loaded), load() loads.

The checks run in a fresh interpreter, so that "nothing imported" is measured on ``sys.modules`` and not hidden
by what other tests imported.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
HEAVY = ("torch", "transformers", "mmdet", "mmcv", "huggingface_hub")

#: run in a fresh interpreter: build each (name, options), call the given steps, report what happened
SCRIPT = """
import json, sys, time
from harness.core.errors import HarnessError
from harness.registry import registry
out = []
heavy = json.loads(sys.argv[2])
for name, options, steps in json.loads(sys.argv[1]):
    start, error = time.perf_counter(), None
    try:
        det = registry("detectors").load(name)(**options)
        for step in steps:
            getattr(det, step)()
    except HarnessError as exc:
        error = str(exc)
    out.append({"error": error, "seconds": time.perf_counter() - start,
                "heavy": [m for m in heavy if m in sys.modules]})
print(json.dumps(out))
"""


def run_cases(cases: list, tmp_path: Path, **env: str) -> list[dict]:
    environ = {**os.environ, "HARNESS_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", **env}
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(cases), json.dumps(HEAVY)], capture_output=True,
                          text=True, cwd=REPO, env=environ, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed): connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_construction_loads_and_imports_nothing(tmp_path):
    """Every built-in detector is built from its options alone: no torch, no transformers, no weights, no cache."""
    cases = [["mask2former-official", {}, []],
             ["mask2former-official", {"weights": str(tmp_path / "absent.pth"), "sha256": None}, []],
             ["mask2former-official", {"weights": f"http://127.0.0.1:{closed_port()}/x.pth", "sha256": "743b7d99",
                                       "reuse_memory": True, "dtype": "bfloat16", "device": "cpu"}, []],
             ["mask2former-hf", {}, []],
             ["mask2former-hf", {"weights": str(tmp_path / "absent")}, []],
             ["tiny", {}, []],
             ["mmdet", {"weights": str(tmp_path / "absent.pth")}, []]]
    for case, got in zip(cases, run_cases(cases, tmp_path), strict=True):
        assert got["error"] is None, (case, got)
    assert got["heavy"] == [], got["heavy"]  # the last case has seen every construction above
    assert not (tmp_path / "cache").exists()  # the tiny model is built by load(), not before


@pytest.mark.parametrize(("name", "options", "message"), [
    ("mask2former-official", {"weights": "{tmp}/absent.pth", "sha256": None},
     r"weights=.*absent.pth: no such file; pass the official .*weights=official"),
    ("mask2former-official", {"weights": "http://127.0.0.1:{port}/ckpt.pth", "sha256": "743b7d99"},
     r"127.0.0.1:\d+/ckpt.pth does not answer .*--detector-args weights=PATH"),
    ("mask2former-official", {"weights": "http://127.0.0.1:{port}/ckpt.pth", "sha256": None},
     r"a URL needs sha256=HEX"),
    ("mask2former-hf", {"weights": "{tmp}/absent"},
     r"weights=.*absent: no such folder; pass --detector-args weights=LOCAL_FOLDER"),
    ("mask2former-hf", {"weights": "nobody-here/no-such-mask2former"},
     r"not in the Hugging Face cache .*HF_HUB_OFFLINE.*--detector-args weights=LOCAL_FOLDER"),
    pytest.param("mmdet", {"weights": "{tmp}/absent.pth", "device": "cpu"}, r"needs mmdet .*pip install",
                 marks=pytest.mark.skipif(importlib.util.find_spec("mmdet") is not None, reason="mmdet installed")),
])
def test_resolve_fails_fast_in_one_line_without_loading(tmp_path, name, options, message):
    import re

    port = closed_port()
    options = {k: v.format(tmp=tmp_path, port=port) if isinstance(v, str) else v for k, v in options.items()}
    (got,) = run_cases([[name, options, ["resolve"]]], tmp_path)
    assert got["error"] is not None and re.search(message, got["error"]), got["error"]
    assert "\n" not in got["error"]
    assert got["seconds"] < 30  # in seconds: importing torch is the slowest part here
    assert "transformers" not in got["heavy"] and "mmdet" not in got["heavy"]  # nothing loaded


def test_resolve_accepts_a_cached_download_without_asking_the_network(tmp_path):
    """A download already in the cache is enough: resolve() does not contact its (here unreachable) URL."""
    url = f"http://127.0.0.1:{closed_port()}/ckpt.pth"
    cached = tmp_path / "cache" / "data" / "743b7d99" / "ckpt.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not read by resolve()")
    (ok,) = run_cases([["mask2former-official", {"weights": url, "sha256": "743b7d99", "device": "cpu"},
                        ["resolve"]]], tmp_path)
    assert ok["error"] is None, ok


def test_resolve_of_the_tiny_detector_and_a_model_folder_pass(tmp_path):
    folder = tmp_path / "m2f"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    got = run_cases([["tiny", {}, ["resolve"]], ["mask2former-hf", {"weights": str(folder)}, ["resolve"]]], tmp_path)
    assert [g["error"] for g in got] == [None, None]
    assert "transformers" not in got[-1]["heavy"]


def test_resolve_finds_a_hub_id_in_the_hugging_face_cache_offline(tmp_path):
    """Offline, a hub id is enough when its config.json is in the Hugging Face cache (the layout the hub writes)."""
    repo = tmp_path / "hub" / "models--someone--cached-m2f"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("0" * 40) / "config.json").write_text("{}")
    cases = [["mask2former-hf", {"weights": "someone/cached-m2f"}, ["resolve"]],
             ["mask2former-hf", {"weights": "someone/not-cached"}, ["resolve"]]]
    cached, missing = run_cases(cases, tmp_path, HF_HUB_CACHE=str(tmp_path / "hub"))
    assert cached["error"] is None, cached
    assert "not in the Hugging Face cache" in missing["error"]


def test_resolve_online_asks_the_hub_and_names_the_fix_when_it_does_not_answer(tmp_path):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    (got,) = run_cases([["mask2former-hf", {"weights": "someone/some-m2f"}, ["resolve"]]], tmp_path,
                       HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0", HF_ENDPOINT=endpoint,
                       HF_HUB_CACHE=str(tmp_path / "hub"))
    assert got["error"] is not None and "\n" not in got["error"], got
    assert "hub does not serve it" in got["error"] and "weights=LOCAL_FOLDER" in got["error"]
    assert got["seconds"] < 30 and "transformers" not in got["heavy"]
