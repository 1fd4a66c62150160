"""Shared fixtures: offline hub, a private cache, the shared benchmark data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# test-only helpers shared by several test files (synthetic runs, the throw-away plugin) live in tests/support
sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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
