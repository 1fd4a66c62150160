"""ImgEdit's part of the judge: the official request of a case, its cache fields, and keys that stay what they
were (the judge itself is tested in tests/scorers/test_openai_judge.py)."""

from __future__ import annotations

import base64
from pathlib import Path
from types import ModuleType

import pytest

from harness.benchmarks.imgedit.data import demo_case_set
from harness.benchmarks.imgedit.judge import DEFAULT_MODEL, PROTOCOL, cache_fields, judge_request
from harness.core.hashing import content_hash
from harness.scorers.openai_judge import OpenAIJudge


def test_request_of_a_case_is_the_official_message(peer: ModuleType, api_key: str, tmp_path: Path) -> None:
    cs = demo_case_set()
    case, other = cs.cases[0], cs.cases[1]
    rubric = cs.rubrics[case.edit_type]
    req = judge_request("k", rubric, case.prompt, cs.source_path(case), cs.source_path(other))
    with peer.serve(keep_bodies=True) as srv:
        judge = OpenAIJudge(model="gpt-4.1", base_url=srv.url, cache=tmp_path / "c.sqlite", protocol=PROTOCOL)
        [res] = judge.judge_many([req])
        body = srv.state.bodies[0]
    assert res.ok and res.answer.splitlines()[1].startswith("Prompt Compliance: ")  # the rubric's own labels
    [message] = body["messages"]
    assert message["role"] == "user" and [p["type"] for p in message["content"]] == ["text", "image_url", "image_url"]
    assert "<edit_prompt>" in rubric and message["content"][0]["text"] == rubric.replace("<edit_prompt>", case.prompt)
    for part, path in zip(message["content"][1:], [cs.source_path(case), cs.source_path(other)], strict=True):
        head, b64 = part["image_url"]["url"].split(",", 1)
        assert head == "data:image/png;base64" and base64.b64decode(b64) == path.read_bytes()


def test_cache_key_depends_on_every_field_of_a_case() -> None:
    base = {"rubric_sha": "r", "case": "1", "instruction": "add a cat", "source_sha": "s", "edited_sha": "e"}
    judge = OpenAIJudge(protocol=PROTOCOL)
    key = judge.cache_key(cache_fields(**base))
    for field in base:
        assert judge.cache_key(cache_fields(**(base | {field: "x"}))) != key
    swapped = cache_fields(**(base | {"source_sha": "e", "edited_sha": "s"}))
    assert judge.cache_key(swapped) != key


#: cache keys and judge fingerprints computed by the judge before it moved to harness.scorers: a judge cache
#: written then must still answer, and scoring hashes must stay what they were
PINNED_FIELDS = {"rubric_sha": "ab" * 32, "case": "1004", "instruction": "Add a red hat to the dog.",
                 "source_sha": "cd" * 32, "edited_sha": "ef" * 32}
PINNED = [
    ({"base_url": "http://127.0.0.1:8000/v1"}, "9ecf114c34ab94a6828804589b884219", "d3a0659e840d"),
    ({"base_url": "https://api.openai.com/v1", "model": "gpt-4o", "temperature": None, "seed": None, "max_tokens": 512},
     "3ce7441b563c4e7ac1c477042d9cb935", "8615e0e58030"),
    ({"base_url": "http://u:pw@10.0.0.1:8000/v1/"}, "1863e819309fcdc3e5e741c73bc0e969", "d3a0659e840d"),
]


@pytest.mark.parametrize(("options", "key", "scorer_hash"), PINNED)
def test_cache_key_and_fingerprint_are_what_they_were(options: dict, key: str, scorer_hash: str,
                                                      tmp_path: Path) -> None:
    judge = OpenAIJudge(**{"cache": tmp_path / "c.sqlite", "model": DEFAULT_MODEL, "protocol": PROTOCOL, **options})
    assert judge.cache_key(cache_fields(**PINNED_FIELDS)) == key
    fingerprint = judge.fingerprint()
    assert fingerprint == {"judge": "openai", "model": options.get("model", "gpt-4.1-2025-04-14"),
                           "temperature": options.get("temperature", 0.0), "seed": options.get("seed", 42),
                           "max_tokens": options.get("max_tokens"),
                           "message": "imgedit-basic-v1: user[text, original, edited] png data urls"}
    assert content_hash(fingerprint, 12) == judge.scorer_hash() == scorer_hash


def test_answers_are_cached_where_they_always_were(harness_cache: Path, tmp_path: Path) -> None:
    """Without ``--judge-cache``: ``$HARNESS_CACHE/imgedit/judge-cache.sqlite`` (docs/imgedit.md, "Judge cache")."""
    assert OpenAIJudge(protocol=PROTOCOL).cache_path == harness_cache / "imgedit" / "judge-cache.sqlite"
    assert OpenAIJudge(protocol=PROTOCOL, cache=tmp_path / "j.db").cache_path == tmp_path / "j.db"
