"""The OpenAI-compatible VLM judge (``harness.judges`` entry ``openai``): async, bounded, retried, cached.

One chat request per case, exactly as ImgEdit's ``basic_bench.py`` builds it: one user message whose
content is [rubric text with ``<edit_prompt>`` filled in, original image, edited image], the raw file
bytes base64-encoded and declared ``image/png``. Additionally ``temperature`` (default 0) and ``seed``
(default 42) are sent (``--temperature none --judge-seed none`` sends neither, like the official script).

* The API key comes from ``OPENAI_API_KEY`` or the variable named by ``--judge-api-key-env``; it is
  handed to the client only, never stored in the fingerprint, cache, records or logs. The base URL is
  shown and stored only without its credentials (``harness.core.secrets``); a query string in it
  (``?api-version=...``) is sent with every request.
* Concurrency is bounded by an ``asyncio.Semaphore``; 429/5xx/timeouts/connection errors/malformed
  responses are retried with exponential backoff and full jitter, honouring ``Retry-After``; other 4xx and
  content-filter refusals fail the case at once (``judge_failed`` with the reason). 401/403/404 stop the
  run with one line (a wrong key, base URL or model name fails every case alike). Every attempt that
  brought no answer is counted by cause (``http_<status>``, ``timeout``, ``connection``, ``parse``,
  ``content_filter``), per case and per run.
* A SQLite cache keyed by (endpoint, requested model, rubric sha, case id, instruction, image sha256s,
  request parameters) keeps every answer the moment it arrives, so re-scoring costs nothing and a crash
  loses nothing. The model string the endpoint returns and the token usage are stored with each answer.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.core.hashing import content_hash
from harness.core.secrets import redact, redact_url, register_secret, register_url, split_query

DEFAULT_MODEL = "gpt-4.1-2025-04-14"  # the leaderboard's GPT-4.1, as a dated snapshot (imgedit.md §3.2)
DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: USD per 1M (input, output) tokens, list prices as of 2025 (imgedit.md §8.6); longest prefix wins
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4.1": (2.0, 8.0), "gpt-4.1-mini": (0.4, 1.6), "gpt-4.1-nano": (0.1, 0.4),
    "gpt-4o": (2.5, 10.0), "gpt-4o-mini": (0.15, 0.6),
}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JudgeRequest:
    """What to judge: the cache key, the filled rubric text and the two image files."""

    key: str
    text: str
    source: Path
    edited: Path


@dataclass
class JudgeResult:
    """One case's outcome: the answer (``ok``) or the failure reason, with usage and attempts.

    ``causes`` counts the attempts that brought no answer, by cause; ``endpoint`` is the base URL that
    answered, without credentials.
    """

    key: str
    ok: bool
    answer: str | None = None
    model: str | None = None
    reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0
    cached: bool = False
    seconds: float = 0.0
    causes: dict[str, int] = field(default_factory=dict)
    endpoint: str | None = None


@dataclass
class JudgeStats:
    """Counters of one scoring run (requests actually sent, retries, cache hits, tokens sent now, causes)."""

    requests: int = 0
    retries: int = 0
    cache_hits: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    returned_models: set[str] = field(default_factory=set)
    causes: Counter = field(default_factory=Counter)


def price_for(model: str, override: tuple[float, float] | None = None) -> tuple[float, float] | None:
    """USD per 1M input/output tokens for a model string (dated snapshots match their alias), or None."""
    if override:
        return override
    best = max((p for p in PRICES if model == p or model.startswith(p + "-")), key=len, default=None)
    return PRICES[best] if best else None


def estimate_cost(model: str, prompt_tokens: int, completion_tokens: int,
                  override: tuple[float, float] | None = None) -> float | None:
    price = price_for(model, override)
    return None if price is None else (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6


def data_url(path: Path) -> str:
    """The official encoding: raw file bytes, base64, declared as PNG whatever the format."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def build_messages(text: str, source: Path, edited: Path) -> list[dict[str, Any]]:
    """One user message: [text, original image, edited image] (basic_bench.py's order; no system prompt)."""
    return [{"role": "user", "content": [
        {"type": "text", "text": text},
        {"type": "image_url", "image_url": {"url": data_url(source)}},
        {"type": "image_url", "image_url": {"url": data_url(edited)}},
    ]}]


class JudgeCache:
    """SQLite answers by cache key; written (and committed) as each answer arrives. Safe across processes."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: every commit survives a killed process
        self.db.execute("PRAGMA busy_timeout=60000")
        self.db.execute("""CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, requested_model TEXT,
                           returned_model TEXT, answer TEXT NOT NULL, prompt_tokens INTEGER,
                           completion_tokens INTEGER, created REAL, endpoint TEXT)""")
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(answers)")}
        if "endpoint" not in columns:  # a cache written before the endpoint was recorded
            self.db.execute("ALTER TABLE answers ADD COLUMN endpoint TEXT")
        self.db.commit()

    def get(self, key: str) -> JudgeResult | None:
        row = self.db.execute("SELECT returned_model, answer, prompt_tokens, completion_tokens, endpoint FROM answers "
                              "WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        return JudgeResult(key, True, row[1], row[0], prompt_tokens=row[2] or 0, completion_tokens=row[3] or 0,
                           cached=True, endpoint=row[4])

    def put(self, result: JudgeResult, requested_model: str) -> None:
        """Keep an answer; the endpoint is stored as given (callers pass it without credentials)."""
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO answers (key, requested_model, returned_model, answer, "
                            "prompt_tokens, completion_tokens, created, endpoint) VALUES (?,?,?,?,?,?,?,?)",
                            (result.key, requested_model, result.model, result.answer, result.prompt_tokens,
                             result.completion_tokens, time.time(), result.endpoint))

    def close(self) -> None:
        self.db.close()


class OpenAIJudge:
    """An OpenAI-compatible chat endpoint (OpenAI, Azure-compatible proxies, vLLM, ...) as the judge."""

    name = "openai"

    def __init__(self, *, model: str = DEFAULT_MODEL, base_url: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", concurrency: int = 32, max_retries: int = 6,
                 timeout: float = 120.0, temperature: float | None = 0.0, seed: int | None = 42,
                 max_tokens: int | None = None, backoff: float = 1.0, backoff_max: float = 60.0,
                 price: tuple[float, float] | None = None, cache: str | os.PathLike | None = None):
        if concurrency < 1:
            raise HarnessError("--judge-concurrency must be >= 1")
        if max_retries < 0:
            raise HarnessError("--judge-retries must be >= 0")
        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        register_url(self.base_url)
        self.endpoint = endpoint_id(self.base_url)
        self.api_key_env = api_key_env
        self.concurrency, self.max_retries, self.timeout = concurrency, max_retries, timeout
        self.temperature, self.seed, self.max_tokens = temperature, seed, max_tokens
        self.backoff, self.backoff_max, self.price = backoff, backoff_max, price
        from harness.core.datafiles import cache_dir

        self.cache_path = Path(cache) if cache else cache_dir() / "imgedit" / "judge-cache.sqlite"
        self.stats = JudgeStats()

    # -- identity ---------------------------------------------------------------------------------------
    def parameters(self) -> dict[str, Any]:
        """Request parameters that can change answers (part of every cache key)."""
        return {"temperature": self.temperature, "seed": self.seed, "max_tokens": self.max_tokens,
                "message": "imgedit-basic-v1: user[text, original, edited] png data urls"}

    def fingerprint(self) -> dict[str, Any]:
        """The judge's identity (never the key, nor the base URL's credentials)."""
        return {"judge": self.name, "model": self.model, **self.parameters()}

    def cache_key(self, *, rubric_sha: str, case: str, instruction: str, source_sha: str, edited_sha: str) -> str:
        """The answer's key: the same model name served by another endpoint is another judge."""
        return content_hash({"endpoint": self.endpoint, "model": self.model, "rubric_sha": rubric_sha, "case": case,
                             "instruction": instruction, "images": [source_sha, edited_sha],
                             "parameters": self.parameters()}, 32)

    def _api_key(self) -> str:
        key = os.environ.get(self.api_key_env)
        if key:
            register_secret(key)
            return key
        if self.base_url == DEFAULT_BASE_URL:
            raise HarnessError(f"the judge needs an API key: set {self.api_key_env} (or name another variable with "
                               "--judge-api-key-env), point --judge-base-url at a local server, or pass --no-score")
        return "EMPTY"  # local OpenAI-compatible servers (vLLM) accept any key

    def check_ready(self) -> None:
        """Fail before any work if the key is missing or openai is not installed."""
        self._api_key()
        try:
            import openai  # noqa: F401
        except ImportError as exc:
            raise HarnessError("the ImgEdit judge needs the openai client: pip install "
                               "'dreamlite-harness[imgedit]'") from exc

    # -- judging ----------------------------------------------------------------------------------------
    def judge_many(self, requests: Sequence[JudgeRequest],
                   on_result: Callable[[JudgeResult], None] | None = None) -> list[JudgeResult]:
        """Judge all requests (cache first), at most ``concurrency`` in flight; one result per request."""
        cache = JudgeCache(self.cache_path)
        try:
            results: dict[str, JudgeResult] = {}
            todo = []
            for req in requests:
                hit = cache.get(req.key)
                if hit is not None:
                    self.stats.cache_hits += 1
                    if hit.model:
                        self.stats.returned_models.add(hit.model)
                    results[req.key] = hit
                    if on_result:
                        on_result(hit)
                else:
                    todo.append(req)
            if todo:
                def done(result: JudgeResult) -> None:
                    if result.ok:
                        cache.put(result, self.model)  # durable before anything else happens
                    results[result.key] = result
                    if on_result:
                        on_result(result)

                asyncio.run(self._run(todo, done))
            return [results[r.key] for r in requests]
        finally:
            cache.close()

    async def _run(self, todo: Sequence[JudgeRequest], done: Callable[[JudgeResult], None]) -> None:
        import openai

        for name in ("openai", "httpx", "httpx2", "httpcore", "httpcore2"):
            logging.getLogger(name).setLevel(max(logging.getLogger(name).level, logging.WARNING))
        url, query = split_query(self.base_url)
        client = openai.AsyncOpenAI(api_key=self._api_key(), base_url=url, default_query=query or None,
                                    max_retries=0, timeout=self.timeout)
        sem = asyncio.Semaphore(self.concurrency)
        fatal: list[BaseException] = []

        async def one(req: JudgeRequest) -> None:
            async with sem:
                if fatal:
                    return
                try:
                    result = await self._judge_one(client, req)
                except HarnessError as exc:
                    fatal.append(exc)
                    return
                done(result)

        try:
            await asyncio.gather(*(one(r) for r in todo))
        finally:
            await client.close()
        if fatal:
            raise fatal[0]

    async def _judge_one(self, client: Any, req: JudgeRequest) -> JudgeResult:
        import openai
        from openai.types.chat import ChatCompletion

        kwargs: dict[str, Any] = {"model": self.model, "messages": build_messages(req.text, req.source, req.edited)}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.seed is not None:
            kwargs["seed"] = self.seed
        if self.max_tokens is not None:
            kwargs["max_tokens"] = self.max_tokens
        start = time.perf_counter()
        reason = ""
        causes: Counter = Counter()  # attempts that brought no answer, by cause
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.stats.retries += 1
            self.stats.requests += 1
            retry_after: float | None = None
            try:
                # the client's generic POST: the same request, errors and response type as
                # chat.completions.create, without re-walking the base64 payload through its TypedDict transform
                # (half of the client's CPU per request; it is the bottleneck at 32 requests in flight)
                resp = await client.post("/chat/completions", cast_to=ChatCompletion, body=kwargs)
                answer, why = _answer(resp)
                if answer is not None:
                    usage = getattr(resp, "usage", None)
                    pt = int(getattr(usage, "prompt_tokens", 0) or 0)
                    ct = int(getattr(usage, "completion_tokens", 0) or 0)
                    self.stats.prompt_tokens += pt
                    self.stats.completion_tokens += ct
                    model = str(getattr(resp, "model", "") or "")
                    if model:
                        self.stats.returned_models.add(model)
                    return JudgeResult(req.key, True, answer, model or None, prompt_tokens=pt, completion_tokens=ct,
                                       attempts=attempt + 1, seconds=time.perf_counter() - start,
                                       causes=dict(causes), endpoint=self.endpoint)
                reason, cause = why, "content_filter" if why.startswith("content_filter") else "parse"
            except openai.APIStatusError as exc:
                status = exc.status_code
                reason, cause = f"HTTP {status}: {_short(exc)}", f"http_{status}"
                if status in (401, 403):
                    raise HarnessError(f"judge endpoint {self.endpoint} refused the API key (HTTP {status}); check "
                                       f"{self.api_key_env}") from None
                if status == 404:
                    raise HarnessError(f"judge endpoint {self.endpoint}: HTTP 404 ({_short(exc)}); check "
                                       f"--judge-model {self.model!r} and --judge-base-url (it ends in /v1)") from None
                retry_after = _retry_after(exc.response.headers)
            except openai.APITimeoutError:
                reason, cause = f"timeout after {self.timeout:g}s", "timeout"
            except openai.APIConnectionError as exc:
                reason, cause = f"connection error: {_short(exc)}", "connection"
            except Exception as exc:  # malformed body (e.g. truncated JSON) and the like: retried
                reason, cause = f"bad response: {type(exc).__name__}: {_short(exc)}", "parse"
            causes[cause] += 1
            self.stats.causes[cause] += 1
            if not _retryable(cause):
                return self._failed(req, reason, attempt + 1, start, causes)
            if attempt < self.max_retries:
                await asyncio.sleep(self._wait(attempt, retry_after))
        return self._failed(req, f"gave up after {self.max_retries + 1} attempts; last: {reason}",
                            self.max_retries + 1, start, causes)

    def _failed(self, req: JudgeRequest, reason: str, attempts: int, start: float, causes: Counter) -> JudgeResult:
        self.stats.failures += 1
        return JudgeResult(req.key, False, reason=reason, attempts=attempts, seconds=time.perf_counter() - start,
                           causes=dict(causes), endpoint=self.endpoint)

    def _wait(self, attempt: int, retry_after: float | None) -> float:
        """Full-jitter exponential backoff; a server's Retry-After is a floor (capped at backoff_max)."""
        wait = random.uniform(0, min(self.backoff_max, self.backoff * 2**attempt))
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.backoff_max))
        return wait


def _retryable(cause: str) -> bool:
    """429, 408, 5xx, timeouts, connection errors and malformed answers are retried; refusals and other 4xx not."""
    if cause.startswith("http_"):
        status = int(cause[5:])
        return status in (408, 429) or status >= 500
    return cause != "content_filter"


def endpoint_id(base_url: str) -> str:
    """The base URL as shown, stored and keyed: credentials masked, no trailing slash on the path."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(redact_url(base_url) or "")
    return urlunsplit(parts._replace(path=parts.path.rstrip("/")))


def _answer(resp: Any) -> tuple[str | None, str]:
    """The answer text, or None and why (no choices, empty content, content filter)."""
    choices = getattr(resp, "choices", None)
    if not choices:
        return None, "bad response: no choices"
    choice = choices[0]
    if getattr(choice, "finish_reason", None) == "content_filter":
        return None, "content_filter: the endpoint refused to answer"
    message = getattr(choice, "message", None)
    content = getattr(message, "content", None)
    if not isinstance(content, str) or not content.strip():
        refusal = getattr(message, "refusal", None)
        if refusal:
            return None, f"content_filter: refusal: {str(refusal)[:200]}"
        return None, "bad response: empty content"
    return content, ""


def _retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), else None."""
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            from email.utils import parsedate_to_datetime

            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _short(exc: BaseException, limit: int = 200) -> str:
    """One line of an error's text, secrets masked (error bodies may echo the request's URL)."""
    text = " ".join(redact(exc).split()) or type(exc).__name__
    return text[:limit]
