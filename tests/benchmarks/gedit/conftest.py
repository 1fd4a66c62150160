"""GEdit test fixtures: the official scoring code transcribed (``official_gedit.py`` beside this file, loaded as a
module: tests/ is not a package) and a runner of ``python -m harness`` subprocesses. The loopback OpenAI peer and
an API key come from ``tests/conftest.py``."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).resolve().parent
KEY = "sk-test-loopback"


def load_official() -> ModuleType:
    name = "gedit_official_transcription"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "official_gedit.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def official() -> ModuleType:
    """The official GEdit scoring code, transcribed (parser, evaluation loop, driver, statistics)."""
    return load_official()


def harness(*args: str, cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m harness ARGS`` in ``cwd`` with the peer's key; fails the test on a non-zero exit if ``check``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OPENAI_API_KEY": KEY, **(env or {})}
    out = subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True, env=env,
                         timeout=600)
    if check and out.returncode != 0:
        raise AssertionError(f"harness {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


@pytest.fixture(scope="session")
def run_harness():
    """:func:`harness`: run ``python -m harness`` as a subprocess."""
    return harness
