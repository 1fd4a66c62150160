"""Shared fixtures: offline hub, a private cache, the shared benchmark data, the loopback OpenAI peer."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# test-only helpers shared by several test files (synthetic runs, the throw-away plugin) live in tests/support
sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
OPENAI_PEER = Path(__file__).resolve().parent / "peers" / "openai_server.py"
PEER_KEY = "sk-test-loopback"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (official prompt data, read-only; never copied into the repo)."""
    if not (SHARED_DATA / "geneval" / "evaluation_metadata.jsonl").is_file():
        pytest.skip(f"official data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def harness_cache(tmp_path_factory) -> Path:
    """A per-session cache so tests never touch (or depend on) the user's cache."""
    path = Path(os.environ.get("HARNESS_TEST_CACHE") or tmp_path_factory.mktemp("harness-cache"))
    os.environ["HARNESS_CACHE"] = str(path)
    return path


def load_peer() -> ModuleType:
    """``tests/peers/openai_server.py`` as a module (tests/ is not a package on sys.path)."""
    name = "loopback_openai_peer"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, OPENAI_PEER)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before exec: dataclasses resolve their module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def peer() -> ModuleType:
    """The loopback OpenAI-compatible server module (``with peer.serve(...) as srv: ... srv.url``)."""
    return load_peer()


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """The peer's API key in ``OPENAI_API_KEY``."""
    monkeypatch.setenv("OPENAI_API_KEY", PEER_KEY)
    return PEER_KEY
