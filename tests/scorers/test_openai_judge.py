"""The shared OpenAI-compatible judge against the loopback peer: request shape, retries, faults, bounds, cache,
readiness checks (key, client, endpoint, model name)."""

from __future__ import annotations

import base64
import logging
import socket
import sqlite3
import time
from pathlib import Path
from types import ModuleType

import pytest

from harness.core.errors import HarnessError
from harness.scorers.openai_judge import JudgeRequest, OpenAIJudge, estimate_cost, price_for

PROTOCOL = "test-v1: user[text, image, image] png data urls"
RUBRIC = "Rate the edit.\n" + "\n".join(f"{name}: A number from 1 to 5." for name in ("Quality", "Fidelity", "Effort"))


def _image(path: Path, color: tuple[int, int, int]) -> Path:
    from PIL import Image

    Image.new("RGB", (24, 16), color).save(path)
    return path


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "images"
    folder.mkdir()
    return [_image(folder / f"{i}.png", (40 * i, 255 - 30 * i, 7 * i)) for i in range(6)]


def _requests(images: list[Path], n: int) -> list[JudgeRequest]:
    return [JudgeRequest(f"k{i}", [f"{RUBRIC}\nCase {i}.", images[i % len(images)], images[(i + 1) % len(images)]])
            for i in range(n)]


def _judge(url: str, tmp_path: Path, **kw: object) -> OpenAIJudge:
    opts = {"model": "gpt-4.1", "base_url": url, "cache": tmp_path / "cache.sqlite", "backoff": 0.01,
            "max_retries": 3, "timeout": 2.0, "protocol": PROTOCOL}
    return OpenAIJudge(**(opts | kw))


# -- the request ----------------------------------------------------------------------------------------------
def test_request_is_one_user_message_of_the_parts_in_order(peer: ModuleType, api_key: str, tmp_path: Path,
                                                           images: list[Path]) -> None:
    req = JudgeRequest("k", ["first text", images[0], "second text", images[1], images[2]])
    with peer.serve(keep_bodies=True) as srv:
        [res] = _judge(srv.url, tmp_path).judge_many([req])
        body = srv.state.bodies[0]
    assert res.ok and res.model == "gpt-4.1-2025-04-14" and res.attempts == 1  # the dated model it returned
    assert body["model"] == "gpt-4.1" and body["temperature"] == 0 and body["seed"] == 42
    assert "max_tokens" not in body
    [message] = body["messages"]
    assert message["role"] == "user"
    assert [p["type"] for p in message["content"]] == ["text", "image_url", "text", "image_url", "image_url"]
    assert [p["text"] for p in message["content"] if p["type"] == "text"] == ["first text", "second text"]
    urls = [p["image_url"]["url"] for p in message["content"] if p["type"] == "image_url"]
    for url, path in zip(urls, images[:3], strict=True):
        head, b64 = url.split(",", 1)
        assert head == "data:image/png;base64" and base64.b64decode(b64) == path.read_bytes()


def test_none_sends_no_sampling_parameters(peer: ModuleType, api_key: str, tmp_path: Path,
                                          images: list[Path]) -> None:
    with peer.serve(keep_bodies=True) as srv:
        _judge(srv.url, tmp_path, temperature=None, seed=None, max_tokens=300).judge_many(_requests(images, 1))
        body = srv.state.bodies[0]
    assert "temperature" not in body and "seed" not in body and body["max_tokens"] == 300


def test_options_are_checked_with_one_line() -> None:
    with pytest.raises(HarnessError, match=r"^judge option concurrency=0: expected a positive integer"):
        OpenAIJudge(protocol=PROTOCOL, concurrency=0)
    with pytest.raises(HarnessError, match=r"^judge option max_retries=-1: expected an integer >= 0"):
        OpenAIJudge(protocol=PROTOCOL, max_retries=-1)
    with pytest.raises(HarnessError, match=r"^judge option price=\(1.0,\): expected IN,OUT"):
        OpenAIJudge(protocol=PROTOCOL, price=(1.0,))
    with pytest.raises(HarnessError, match=r"unknown option 'modle' \(did you mean 'model'\?\)"):
        OpenAIJudge(protocol=PROTOCOL, modle="gpt-4o")
    with pytest.raises(HarnessError, match=r"protocol= is required"):
        OpenAIJudge()


# -- retries and failures -------------------------------------------------------------------------------------
def test_retry_after_is_honoured(peer: ModuleType, api_key: str, tmp_path: Path, images: list[Path]) -> None:
    with peer.serve(fault=peer.every_nth(1000, "429"), retry_after="0.4") as srv:
        start = time.perf_counter()
        [res] = _judge(srv.url, tmp_path).judge_many(_requests(images, 1))
        wall = time.perf_counter() - start
        assert dict(srv.state.statuses) == {429: 1, 200: 1}
    assert res.ok and res.attempts == 2 and wall >= 0.4


@pytest.mark.parametrize("kind", ["429", "500", "timeout", "truncated", "empty"])
def test_transient_faults_are_retried_until_answered(peer: ModuleType, api_key: str, tmp_path: Path,
                                                     images: list[Path], kind: str) -> None:
    with peer.serve(fault=peer.every_nth(2, kind), hold=1.5) as srv:
        # a short timeout only where it is the fault: on a loaded machine a normal answer may take 0.5 s
        judge = _judge(srv.url, tmp_path, timeout=0.5 if kind == "timeout" else 10.0, concurrency=2)
        results = judge.judge_many(_requests(images, 4))
        assert srv.state.faults[kind] >= 2
    assert all(r.ok and r.answer for r in results)
    assert judge.stats.retries == srv.state.faults[kind] and max(r.attempts for r in results) >= 2


def test_exhausted_retries_and_refusals_fail_the_request_with_a_reason(peer: ModuleType, api_key: str,
                                                                       tmp_path: Path, images: list[Path]) -> None:
    with peer.serve(fault=peer.every_nth(1, "500")) as srv:
        [res] = _judge(srv.url, tmp_path, max_retries=2).judge_many(_requests(images, 1))
        assert srv.state.requests["/v1/chat/completions"] == 3
    assert not res.ok and res.attempts == 3 and res.reason.startswith("gave up after 3 attempts; last: HTTP 500")
    with peer.serve(fault=peer.every_nth(1, "content_filter")) as srv:
        [res] = _judge(srv.url, tmp_path).judge_many(_requests(images, 1))
        assert srv.state.requests["/v1/chat/completions"] == 1  # a refusal is not retried
    assert not res.ok and res.reason.startswith("content_filter")


def test_wrong_key_or_model_stops_with_one_line(peer: ModuleType, api_key: str, tmp_path: Path,
                                                images: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-wrong-secret")
    with peer.serve() as srv:
        with pytest.raises(HarnessError) as info:
            _judge(srv.url, tmp_path, api_key_env="MY_JUDGE_KEY").judge_many(_requests(images, 3))
        assert "refused the API key (HTTP 401); check MY_JUDGE_KEY" in str(info.value)
        assert "sk-wrong-secret" not in str(info.value)
        with pytest.raises(HarnessError, match=r"HTTP 404 .*--judge-model 'gpt-5-nonexistent'"):
            _judge(srv.url, tmp_path, model="gpt-5-nonexistent").judge_many(_requests(images, 1))


def test_failed_attempts_are_counted_by_cause(peer: ModuleType, api_key: str, tmp_path: Path,
                                              images: list[Path]) -> None:
    """One request in flight at a time, so the peer's request numbers are the attempts in order."""
    plan = {0: "429", 1: "500", 2: "timeout", 3: "disconnect", 4: "truncated", 5: "empty", 7: "content_filter"}
    with peer.serve(fault=lambda i, body: plan.get(i), hold=1.5) as srv:
        judge = _judge(srv.url, tmp_path, concurrency=1, timeout=0.5, max_retries=6)
        retried, refused = judge.judge_many(_requests(images, 2))
        received = srv.state.counter
    assert retried.ok and retried.attempts == 7
    assert retried.causes == {"http_429": 1, "http_500": 1, "timeout": 1, "connection": 1, "parse": 2}
    assert not refused.ok and refused.attempts == 1 and refused.causes == {"content_filter": 1}
    assert judge.stats.requests == received == 8 and judge.stats.retries == 6
    assert judge.stats.causes == {"http_429": 1, "http_500": 1, "timeout": 1, "connection": 1, "parse": 2,
                                  "content_filter": 1}


def test_debug_logging_never_shows_the_key(peer: ModuleType, api_key: str, tmp_path: Path, images: list[Path],
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with peer.serve(fault=peer.every_nth(2, "500")) as srv:
        judge = _judge(srv.url, tmp_path)
        judge.resolve()
        results = judge.judge_many(_requests(images, 2))
    assert all(r.ok for r in results)
    assert api_key not in caplog.text


# -- bounds ---------------------------------------------------------------------------------------------------
def test_concurrency_is_bounded_and_used(peer: ModuleType, api_key: str, tmp_path: Path,
                                         images: list[Path]) -> None:
    with peer.serve(latency=0.2) as srv:
        start = time.perf_counter()
        results = _judge(srv.url, tmp_path, concurrency=4).judge_many(_requests(images, 12))
        wall = time.perf_counter() - start
        assert srv.state.max_in_flight == 4
    assert all(r.ok for r in results) and 0.6 <= wall < 2.0  # 3 waves of 0.2 s (+ client start-up)


def test_a_fault_free_peer_gets_one_request_per_case_and_no_retry(peer: ModuleType, api_key: str, tmp_path: Path,
                                                                  images: list[Path]) -> None:
    with peer.serve(latency=0.05) as srv:
        judge = _judge(srv.url, tmp_path, concurrency=16)
        results = judge.judge_many(_requests(images, 48))
        received, counted = srv.state.counter, srv.state.requests["/v1/chat/completions"]
    assert all(r.ok and r.attempts == 1 and r.causes == {} for r in results)
    assert judge.stats.requests == received == counted == 48
    assert judge.stats.retries == 0 and not judge.stats.causes


# -- the cache ------------------------------------------------------------------------------------------------
def test_cache_answers_again_without_requests_and_never_stores_the_key(peer: ModuleType, api_key: str,
                                                                      tmp_path: Path, images: list[Path]) -> None:
    reqs = _requests(images, 5)
    with peer.serve() as srv:
        first = _judge(srv.url, tmp_path).judge_many(reqs)
        judge = _judge(srv.url, tmp_path)
        again = judge.judge_many(reqs)
        assert srv.state.requests["/v1/chat/completions"] == 5
    assert [r.answer for r in again] == [r.answer for r in first] and all(r.cached for r in again)
    assert judge.stats.cache_hits == 5 and judge.stats.requests == 0
    assert [r.model for r in again] == ["gpt-4.1-2025-04-14"] * 5
    for path in tmp_path.iterdir():
        if path.is_file():
            assert api_key.encode() not in path.read_bytes()


def test_cache_key_depends_on_everything_that_changes_the_answer() -> None:
    fields = {"question": "q", "images": ["a", "b"]}
    judge = OpenAIJudge(protocol=PROTOCOL)
    key = judge.cache_key(fields)
    assert key == OpenAIJudge(protocol=PROTOCOL, concurrency=3, cache="elsewhere.sqlite").cache_key(fields)
    assert judge.cache_key(fields | {"question": "x"}) != key
    assert judge.cache_key(fields | {"images": ["b", "a"]}) != key
    assert OpenAIJudge(protocol="other-v1").cache_key(fields) != key
    assert OpenAIJudge(protocol=PROTOCOL, model="gpt-4o").cache_key(fields) != key
    assert OpenAIJudge(protocol=PROTOCOL, temperature=None).cache_key(fields) != key
    assert OpenAIJudge(protocol=PROTOCOL, seed=1).cache_key(fields) != key
    assert OpenAIJudge(protocol=PROTOCOL, max_tokens=10).cache_key(fields) != key
    local = OpenAIJudge(protocol=PROTOCOL, base_url="http://u:one@127.0.0.1:8000/v1/")
    assert local.cache_key(fields) != key  # another endpoint
    assert local.cache_key(fields) == OpenAIJudge(protocol=PROTOCOL, base_url="http://u:two@127.0.0.1:8000/v1"
                                                  ).cache_key(fields)  # credentials aside
    with pytest.raises(ValueError, match="may not be named model"):
        judge.cache_key({"model": "gpt-4o"})


def test_fingerprint_names_what_changes_answers_and_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    judge = OpenAIJudge(protocol=PROTOCOL, base_url="http://u:pw-secret@127.0.0.1:9/v1", concurrency=3)
    assert judge.fingerprint() == {"judge": "openai", "model": "gpt-4.1-2025-04-14", "temperature": 0.0, "seed": 42,
                                   "max_tokens": None, "message": PROTOCOL}
    assert judge.scorer_hash() == OpenAIJudge(protocol=PROTOCOL).scorer_hash()
    assert judge.scorer_hash() != OpenAIJudge(protocol=PROTOCOL, seed=7).scorer_hash()
    assert judge.endpoint == "http://***@127.0.0.1:9/v1"


def test_two_endpoints_serving_the_same_model_name_do_not_share_answers(peer: ModuleType, api_key: str,
                                                                        tmp_path: Path, images: list[Path]) -> None:
    def says(name: str):
        return lambda body, images: f"Brief reasoning: answered by {name}.\nA: 1\nB: 2\nC: 3"

    def keyed(judge: OpenAIJudge) -> list[JudgeRequest]:
        return [JudgeRequest(judge.cache_key({"case": r.key}), r.content) for r in _requests(images, 3)]

    with peer.serve(answer=says("api")) as api, peer.serve(answer=says("vllm"), basic_auth="user:pw12") as vllm:
        first = _judge(api.url, tmp_path)
        from_api = first.judge_many(keyed(first))
        local = _judge(vllm.url.replace("http://", "http://user:pw12@") + "/", tmp_path)
        from_local = local.judge_many(keyed(local))
        again = _judge(api.url + "/", tmp_path)
        from_api_again = again.judge_many(keyed(again))
        assert api.state.counter == 3 and vllm.state.counter == 3
    assert all("by api" in r.answer for r in from_api + from_api_again) and all(r.cached for r in from_api_again)
    assert all("by vllm" in r.answer and not r.cached for r in from_local)
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        endpoints = {row[0] for row in db.execute("SELECT endpoint FROM answers")}
    assert endpoints == {api.url, vllm.url.replace("http://", "http://***@")}


# -- readiness ------------------------------------------------------------------------------------------------
def test_missing_key_for_the_openai_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(HarnessError, match=r"needs an API key: set OPENAI_API_KEY"):
        OpenAIJudge(protocol=PROTOCOL).resolve()


def test_resolve_accepts_a_served_model_without_sending_a_chat_request(peer: ModuleType, api_key: str,
                                                                       tmp_path: Path) -> None:
    with peer.serve() as srv:
        _judge(srv.url, tmp_path).resolve()
        _judge(srv.url + "?api-version=2024-10-21", tmp_path, model="judge-small").resolve()
        assert srv.state.requests["GET /v1/models/gpt-4.1"] == 1
        assert srv.state.requests["GET /v1/models/judge-small"] == 1
        assert srv.state.counter == 0  # nothing paid for


def test_resolve_unknown_model_is_one_line_with_the_close_names(peer: ModuleType, api_key: str,
                                                                tmp_path: Path) -> None:
    with peer.serve() as srv, pytest.raises(HarnessError) as info:
        _judge(srv.url, tmp_path, model="gpt-4.1-2025-04-41").resolve()
    message = str(info.value)
    assert message.startswith(f"judge endpoint {srv.url} does not serve model 'gpt-4.1-2025-04-41' (did you mean "
                              "gpt-4.1-2025-04-14") and message.endswith("check --judge-model")
    assert "\n" not in message


def test_resolve_without_models_routes_accepts_the_name_with_a_log_line(peer: ModuleType, api_key: str,
                                                                        tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="harness.scorers.openai_judge")
    with peer.serve(serve_models=False) as srv:
        _judge(srv.url, tmp_path, model="any-name").resolve()
        assert srv.state.requests["GET /v1/models"] == 1 and srv.state.statuses[404] == 2
    assert "has no /models route: model name 'any-name' not checked" in caplog.text


def test_resolve_reads_the_list_where_models_are_not_served_by_id(peer: ModuleType, api_key: str,
                                                                   tmp_path: Path) -> None:
    """vLLM serves only ``GET /models``: a listed name passes, an unlisted one is refused."""
    with peer.serve(serve_model_ids=False) as srv:
        _judge(srv.url, tmp_path, model="judge-small").resolve()
        with pytest.raises(HarnessError, match=r"does not serve model 'judge-large' \(did you mean judge-small"):
            _judge(srv.url, tmp_path, model="judge-large").resolve()
        assert srv.state.requests["GET /v1/models"] == 2 and srv.state.requests["GET /v1/models/judge-small"] == 1


def test_resolve_refused_key_is_one_line_without_the_key(peer: ModuleType, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-wrong-secret")
    with peer.serve() as srv, pytest.raises(HarnessError) as info:
        _judge(srv.url, tmp_path, api_key_env="MY_JUDGE_KEY").resolve()
    assert str(info.value) == f"judge endpoint {srv.url} refused the API key (HTTP 401); check MY_JUDGE_KEY"


def test_resolve_unreachable_endpoint_fails_in_seconds(api_key: str, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.perf_counter()
    with pytest.raises(HarnessError) as info:
        _judge(f"http://u:pw-secret@127.0.0.1:{port}/v1", tmp_path).resolve()
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert message.startswith(f"judge endpoint http://***@127.0.0.1:{port}/v1 is unreachable (")
    assert "pw-secret" not in message and "\n" not in message


def test_resolve_silent_endpoint_times_out(api_key: str, tmp_path: Path) -> None:
    """A server that accepts the connection and never answers: the judge's timeout (capped at 10 s) applies."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        port = sock.getsockname()[1]
        start = time.perf_counter()
        with pytest.raises(HarnessError, match=r"did not answer within 0.5s; check --judge-base-url"):
            _judge(f"http://127.0.0.1:{port}/v1", tmp_path, timeout=0.5).resolve()
        assert time.perf_counter() - start < 3


# -- prices ---------------------------------------------------------------------------------------------------
def test_prices_and_cost() -> None:
    assert price_for("gpt-4.1-2025-04-14") == (2.0, 8.0)
    assert price_for("gpt-4.1-mini-2025-04-14") == (0.4, 1.6)
    assert price_for("my-vllm-model") is None and price_for("x", (1.0, 2.0)) == (1.0, 2.0)
    assert estimate_cost("gpt-4.1", 1_000_000, 100_000) == pytest.approx(2.8)
    judge = OpenAIJudge(protocol=PROTOCOL, model="my-vllm-model")
    assert judge.estimate_cost(1_000_000, 0) is None
    assert judge.estimate_cost(1_000_000, 0, model="gpt-4o-2024-08-06") == pytest.approx(2.5)
    assert OpenAIJudge(protocol=PROTOCOL, model="x", price=[1.0, 2.0]).estimate_cost(500_000, 500_000) == 1.5
