"""Run folders made by the code before the one-engine redesign (tests/fixtures/pre_engine) still work.

* They resume: the same command on a copy finds every unit recorded (no image made again, no answer asked
  again) and writes the same results.
* The engine writes what the old code wrote: the same commands into new folders give the same
  ``results.jsonl``, ``summary.json`` and record files, ignoring times, run ids and the plugins' module
  paths (their installed names changed).
* They compare with new runs (``harness compare``).

The fixture folders and their commands: tests/fixtures/make_pre_engine_runs.py.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
spec = importlib.util.spec_from_file_location("make_pre_engine_runs", FIXTURES / "make_pre_engine_runs.py")
maker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(maker)

#: fields that legitimately differ between two runs of the same thing
VOLATILE = {"seconds", "created", "updated_at", "run_id", "scored_run", "harness_version", "target", "environment",
            "endpoint", "endpoints", "cached", "attempts", "attempt_causes", "requests", "retries", "cache_hits",
            "prompt_tokens", "completion_tokens", "cost_usd", "root", "filename"}


def normalized(value):
    if isinstance(value, dict):
        return {k: normalized(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [normalized(v) for v in value]
    return value


def lines(path: Path) -> list:
    return [normalized(json.loads(x)) for x in path.read_text().splitlines() if x.strip()]


def record_set(folder: Path, prefix: str) -> list:
    rows = [r for p in (folder / "records").glob(f"{prefix}-*.jsonl") for r in lines(p)]
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))


@pytest.fixture(scope="module")
def made(tmp_path_factory, shared_data):
    """The fixture folders copied, resumed with the new code, and the same commands run afresh."""
    peer_spec = importlib.util.spec_from_file_location("pre_engine_peer", FIXTURES.parent / "peers" /
                                                       "openai_server.py")
    peer = importlib.util.module_from_spec(peer_spec)
    sys.modules["pre_engine_peer"] = peer
    peer_spec.loader.exec_module(peer)
    root = tmp_path_factory.mktemp("pre")
    old, new = root / "old", root / "new"
    new.mkdir()
    shutil.copytree(FIXTURES / "pre_engine", old)
    with peer.serve(port=maker.JUDGE_PORT) as server:
        maker.make(old, old, server.url)  # resume: every unit is recorded
        asked = server.state.requests["/v1/chat/completions"]
        maker.make(new, new, server.url)
        fresh = server.state.requests["/v1/chat/completions"] - asked
    assert fresh == 9  # the same commands from scratch ask the judge once per case
    return old, new, asked


def test_an_old_folder_resumes_without_doing_anything_again(made):
    old, _, asked = made
    for name in maker.COMMANDS:
        before = {p.relative_to(FIXTURES / "pre_engine"): p.read_bytes()
                  for p in (FIXTURES / "pre_engine" / name).rglob("*.png")}
        after = {p.relative_to(old): p.read_bytes() for p in (old / name).rglob("*.png")}
        assert after == before, name  # no image made again
        keys = [r["key"] for p in (old / name / "records").glob("generate-*.jsonl") for r in lines(p)]
        assert len(keys) == len(set(keys)), name  # no unit recorded twice
    assert asked == 0  # the judge was not asked again


@pytest.mark.parametrize("name", list(maker.COMMANDS))
def test_the_engine_writes_what_the_old_code_wrote(made, name):
    old, new, _ = made
    fixture = FIXTURES / "pre_engine" / name
    for folder in (old / name, new / name):
        assert lines(folder / "results.jsonl") == lines(fixture / "results.jsonl")
        assert normalized(json.loads((folder / "summary.json").read_text())) == \
            normalized(json.loads((fixture / "summary.json").read_text()))
        for prefix in ("generate", "score"):
            assert record_set(folder, prefix) == record_set(fixture, prefix)


def test_old_and_new_runs_compare(made):
    from harness.reports.regression import compare_runs
    from harness.reports.runs import load_run

    _, new, _ = made
    for name in maker.COMMANDS:
        comparisons, _ = compare_runs(load_run(str(FIXTURES / "pre_engine" / name)), load_run(str(new / name)))
        assert comparisons and all(c.verdict == "same" for c in comparisons), name
