"""ImgEdit test fixtures: the loopback OpenAI peer (loaded by path), the shared official data, an API key."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

PEER = Path(__file__).resolve().parents[2] / "peers" / "openai_server.py"
IMGEDIT_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "imgedit"
KEY = "sk-test-loopback"


def load_peer() -> ModuleType:
    """``tests/peers/openai_server.py`` as a module (tests/ is not a package on sys.path)."""
    name = "imgedit_openai_peer"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, PEER)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before exec: dataclasses resolve their module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def peer() -> ModuleType:
    return load_peer()


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    return KEY


@pytest.fixture(scope="session")
def imgedit_data() -> Path:
    """``../shared/data/imgedit`` (official case and rubric files; read-only, never copied)."""
    if not (IMGEDIT_DATA / "basic_edit.json").is_file():
        pytest.skip(f"official ImgEdit data not found at {IMGEDIT_DATA}")
    return IMGEDIT_DATA
