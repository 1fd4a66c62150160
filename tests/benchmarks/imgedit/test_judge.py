"""The OpenAI-compatible judge against the loopback peer: request shape, retries, faults, bounds, cache."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from types import ModuleType

import pytest

from benchmarks.imgedit.data import demo_case_set
from benchmarks.imgedit.judge import JudgeRequest, OpenAIJudge, estimate_cost, price_for
from harness.errors import HarnessError


def _requests(n: int) -> list[JudgeRequest]:
    cs = demo_case_set()
    out = []
    for i in range(n):
        c = cs.cases[i % len(cs.cases)]
        edited = cs.cases[(i + 1) % len(cs.cases)]
        out.append(JudgeRequest(f"k{i}", cs.rubrics[c.edit_type].replace("<edit_prompt>", c.prompt),
                                cs.source_path(c), cs.source_path(edited)))
    return out


def _judge(url: str, tmp_path: Path, **kw: object) -> OpenAIJudge:
    opts = {"model": "gpt-4.1", "base_url": url, "cache": tmp_path / "cache.sqlite", "backoff": 0.01,
            "max_retries": 3, "timeout": 2.0}
    return OpenAIJudge(**(opts | kw))


def test_request_is_the_official_message_plus_temperature_and_seed(peer: ModuleType, api_key: str,
                                                                  tmp_path: Path) -> None:
    req = _requests(1)[0]
    with peer.serve(keep_bodies=True) as srv:
        [res] = _judge(srv.url, tmp_path).judge_many([req])
        body = srv.state.bodies[0]
    assert res.ok and res.model == "gpt-4.1-2025-04-14" and res.attempts == 1  # the dated model it returned
    assert res.answer.splitlines()[1].startswith("Prompt Compliance: ")
    assert body["model"] == "gpt-4.1" and body["temperature"] == 0 and body["seed"] == 42
    assert "max_tokens" not in body
    [message] = body["messages"]
    assert message["role"] == "user" and [p["type"] for p in message["content"]] == ["text", "image_url", "image_url"]
    assert message["content"][0]["text"] == req.text
    for part, path in zip(message["content"][1:], [req.source, req.edited], strict=True):
        head, b64 = part["image_url"]["url"].split(",", 1)
        assert head == "data:image/png;base64" and base64.b64decode(b64) == path.read_bytes()


def test_official_request_sends_no_sampling_parameters(peer: ModuleType, api_key: str, tmp_path: Path) -> None:
    with peer.serve(keep_bodies=True) as srv:
        _judge(srv.url, tmp_path, temperature=None, seed=None).judge_many(_requests(1))
        body = srv.state.bodies[0]
    assert "temperature" not in body and "seed" not in body


def test_retry_after_is_honoured(peer: ModuleType, api_key: str, tmp_path: Path) -> None:
    with peer.serve(fault=peer.every_nth(1000, "429"), retry_after="0.4") as srv:
        start = time.perf_counter()
        [res] = _judge(srv.url, tmp_path).judge_many(_requests(1))
        wall = time.perf_counter() - start
        assert dict(srv.state.statuses) == {429: 1, 200: 1}
    assert res.ok and res.attempts == 2 and wall >= 0.4


@pytest.mark.parametrize("kind", ["429", "500", "timeout", "truncated", "empty"])
def test_transient_faults_are_retried_until_answered(peer: ModuleType, api_key: str, tmp_path: Path,
                                                     kind: str) -> None:
    with peer.serve(fault=peer.every_nth(2, kind), hold=1.5) as srv:
        judge = _judge(srv.url, tmp_path, timeout=0.5, concurrency=2)
        results = judge.judge_many(_requests(4))
        assert srv.state.faults[kind] >= 2
    assert all(r.ok and r.answer for r in results)
    assert judge.stats.retries == srv.state.faults[kind] and max(r.attempts for r in results) >= 2


def test_exhausted_retries_and_refusals_fail_the_case_with_a_reason(peer: ModuleType, api_key: str,
                                                                    tmp_path: Path) -> None:
    with peer.serve(fault=peer.every_nth(1, "500")) as srv:
        [res] = _judge(srv.url, tmp_path, max_retries=2).judge_many(_requests(1))
        assert srv.state.requests["/v1/chat/completions"] == 3
    assert not res.ok and res.attempts == 3 and res.reason.startswith("gave up after 3 attempts; last: HTTP 500")
    with peer.serve(fault=peer.every_nth(1, "content_filter")) as srv:
        [res] = _judge(srv.url, tmp_path).judge_many(_requests(1))
        assert srv.state.requests["/v1/chat/completions"] == 1  # a refusal is not retried
    assert not res.ok and res.reason.startswith("content_filter")


def test_wrong_key_or_model_stops_with_one_line(peer: ModuleType, api_key: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-wrong-secret")
    with peer.serve() as srv:
        with pytest.raises(HarnessError) as info:
            _judge(srv.url, tmp_path, api_key_env="MY_JUDGE_KEY").judge_many(_requests(3))
        assert "refused the API key (HTTP 401); check MY_JUDGE_KEY" in str(info.value)
        assert "sk-wrong-secret" not in str(info.value)
        with pytest.raises(HarnessError, match=r"HTTP 404 .*--judge-model 'gpt-5-nonexistent'"):
            _judge(srv.url, tmp_path, model="gpt-5-nonexistent").judge_many(_requests(1))


def test_missing_key_for_the_openai_endpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(HarnessError, match=r"needs an API key: set OPENAI_API_KEY"):
        OpenAIJudge(cache=tmp_path / "c.sqlite").check_ready()


def test_concurrency_is_bounded_and_used(peer: ModuleType, api_key: str, tmp_path: Path) -> None:
    with peer.serve(latency=0.2) as srv:
        start = time.perf_counter()
        results = _judge(srv.url, tmp_path, concurrency=4).judge_many(_requests(12))
        wall = time.perf_counter() - start
        assert srv.state.max_in_flight == 4
    assert all(r.ok for r in results) and 0.6 <= wall < 2.0  # 3 waves of 0.2 s (+ client start-up)


def test_cache_answers_again_without_requests_and_never_stores_the_key(peer: ModuleType, api_key: str,
                                                                      tmp_path: Path) -> None:
    reqs = _requests(5)
    with peer.serve() as srv:
        first = _judge(srv.url, tmp_path).judge_many(reqs)
        judge = _judge(srv.url, tmp_path)
        again = judge.judge_many(reqs)
        assert srv.state.requests["/v1/chat/completions"] == 5
    assert [r.answer for r in again] == [r.answer for r in first] and all(r.cached for r in again)
    assert judge.stats.cache_hits == 5 and judge.stats.requests == 0
    assert [r.model for r in again] == ["gpt-4.1-2025-04-14"] * 5
    for path in tmp_path.iterdir():
        assert api_key.encode() not in path.read_bytes()


def test_cache_key_depends_on_everything_that_changes_the_answer(tmp_path: Path) -> None:
    base = {"rubric_sha": "r", "case": "1", "instruction": "add a cat", "source_sha": "s", "edited_sha": "e"}
    judge = OpenAIJudge(cache=tmp_path / "c.sqlite")
    key = judge.cache_key(**base)
    assert key == OpenAIJudge(cache=tmp_path / "other.sqlite", concurrency=3).cache_key(**base)
    for field in base:
        assert judge.cache_key(**(base | {field: "x"})) != key
    assert OpenAIJudge(model="gpt-4o").cache_key(**base) != key
    assert OpenAIJudge(temperature=None).cache_key(**base) != key
    assert OpenAIJudge(seed=1).cache_key(**base) != key
    assert OpenAIJudge(base_url="http://127.0.0.1:8000/v1").cache_key(**base) != key  # another endpoint
    local = OpenAIJudge(base_url="http://u:one@127.0.0.1:8000/v1/").cache_key(**base)
    assert local == OpenAIJudge(base_url="http://u:two@127.0.0.1:8000/v1").cache_key(**base)  # credentials aside


def _keyed(judge: OpenAIJudge, requests: list[JudgeRequest]) -> list[JudgeRequest]:
    """The requests with the keys this judge gives them (as the benchmark builds them)."""
    return [JudgeRequest(judge.cache_key(rubric_sha="r", case=str(i), instruction=r.text, source_sha="s",
                                         edited_sha="e"), r.text, r.source, r.edited) for i, r in enumerate(requests)]


def test_two_endpoints_serving_the_same_model_name_do_not_share_answers(peer: ModuleType, api_key: str,
                                                                        tmp_path: Path) -> None:
    import sqlite3

    def says(name: str):
        return lambda body, images: f"Brief reasoning: answered by {name}.\nA: 1\nB: 2\nC: 3"

    with peer.serve(answer=says("api")) as api, peer.serve(answer=says("vllm"), basic_auth="user:pw12") as vllm:
        first = _judge(api.url, tmp_path)
        from_api = first.judge_many(_keyed(first, _requests(3)))
        local = _judge(vllm.url.replace("http://", "http://user:pw12@") + "/", tmp_path)
        from_local = local.judge_many(_keyed(local, _requests(3)))
        again = _judge(api.url + "/", tmp_path)
        from_api_again = again.judge_many(_keyed(again, _requests(3)))
        assert api.state.counter == 3 and vllm.state.counter == 3
    assert all("by api" in r.answer for r in from_api + from_api_again) and all(r.cached for r in from_api_again)
    assert all("by vllm" in r.answer and not r.cached for r in from_local)
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        endpoints = {row[0] for row in db.execute("SELECT endpoint FROM answers")}
    assert endpoints == {api.url, vllm.url.replace("http://", "http://***@")}


def test_a_fault_free_peer_gets_one_request_per_case_and_no_retry(peer: ModuleType, api_key: str,
                                                                  tmp_path: Path) -> None:
    with peer.serve(latency=0.05) as srv:
        judge = _judge(srv.url, tmp_path, concurrency=16)
        results = judge.judge_many(_requests(48))
        received, counted = srv.state.counter, srv.state.requests["/v1/chat/completions"]
    assert all(r.ok and r.attempts == 1 and r.causes == {} for r in results)
    assert judge.stats.requests == received == counted == 48
    assert judge.stats.retries == 0 and not judge.stats.causes


def test_failed_attempts_are_counted_by_cause(peer: ModuleType, api_key: str, tmp_path: Path) -> None:
    """One request in flight at a time, so the peer's request numbers are the attempts in order."""
    plan = {0: "429", 1: "500", 2: "timeout", 3: "disconnect", 4: "truncated", 5: "empty", 7: "content_filter"}
    with peer.serve(fault=lambda i, body: plan.get(i), hold=1.5) as srv:
        judge = _judge(srv.url, tmp_path, concurrency=1, timeout=0.5, max_retries=6)
        retried, refused = judge.judge_many(_requests(2))
        received = srv.state.counter
    assert retried.ok and retried.attempts == 7
    assert retried.causes == {"http_429": 1, "http_500": 1, "timeout": 1, "connection": 1, "parse": 2}
    assert not refused.ok and refused.attempts == 1 and refused.causes == {"content_filter": 1}
    assert judge.stats.requests == received == 8 and judge.stats.retries == 6
    assert judge.stats.causes == {"http_429": 1, "http_500": 1, "timeout": 1, "connection": 1, "parse": 2,
                                  "content_filter": 1}


def test_prices_and_cost() -> None:
    assert price_for("gpt-4.1-2025-04-14") == (2.0, 8.0)
    assert price_for("gpt-4.1-mini-2025-04-14") == (0.4, 1.6)
    assert price_for("my-vllm-model") is None and price_for("x", (1.0, 2.0)) == (1.0, 2.0)
    assert estimate_cost("gpt-4.1", 1_000_000, 100_000) == pytest.approx(2.8)


def test_debug_logging_never_shows_the_key(peer: ModuleType, api_key: str, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    with peer.serve(fault=peer.every_nth(2, "500")) as srv:
        results = _judge(srv.url, tmp_path).judge_many(_requests(2))
    assert all(r.ok for r in results)
    assert api_key not in caplog.text


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
    from harness.units import content_hash

    judge = OpenAIJudge(cache=tmp_path / "c.sqlite", **options)
    assert judge.cache_key(**PINNED_FIELDS) == key
    fingerprint = judge.fingerprint()
    assert fingerprint == {"judge": "openai", "model": options.get("model", "gpt-4.1-2025-04-14"),
                           "temperature": options.get("temperature", 0.0), "seed": options.get("seed", 42),
                           "max_tokens": options.get("max_tokens"),
                           "message": "imgedit-basic-v1: user[text, original, edited] png data urls"}
    assert content_hash(fingerprint, 12) == scorer_hash
