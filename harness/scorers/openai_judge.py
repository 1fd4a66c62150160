"""An OpenAI-compatible VLM judge (``harness.judges`` entry ``openai``): async, bounded, retried, cached.

One chat request per :class:`JudgeRequest`: a single user message whose content parts are, in order, the
request's texts and images, each image file as the raw file bytes base64-encoded and declared ``image/png``
(docs/imgedit.md, "Judge request"; ImgEdit's request is [rubric text, original, edited]), or an
:class:`InlineImage` as its own bytes and media type (GEdit's JPEG re-encoding, docs/gedit.md). Additionally
``temperature`` (default 0) and ``seed`` (default 42) are sent; ``None`` sends neither. The benchmark names
its message layout with ``protocol``, part of every cache key and of the fingerprint.

* The API key comes from ``OPENAI_API_KEY`` or the variable named by ``api_key_env``; it is handed to the
  client only, never stored in the fingerprint, cache, records or logs. The base URL is shown and stored
  only without its credentials (:mod:`harness.core.secrets`); a query string in it (``?api-version=...``)
  is sent with every request.
* Concurrency is bounded by an ``asyncio.Semaphore``; 429/408/5xx, timeouts, connection errors and
  malformed responses are retried with exponential backoff and full jitter, honouring ``Retry-After``;
  other 4xx and content-filter refusals fail the request at once. 401/403/404 stop the run with one line.
  Every attempt that brought no answer is counted by cause (``http_<status>``, ``timeout``, ``connection``,
  ``parse``, ``content_filter``), per request and per run (docs/imgedit.md, "Retries and failures").
* A SQLite cache keeps every answer the moment it arrives, keyed by :meth:`OpenAIJudge.cache_key`, so
  re-scoring costs nothing and a crash loses nothing (docs/imgedit.md, "Judge cache").
* :meth:`OpenAIJudge.resolve` checks the key, the client, the endpoint and the model name in seconds,
  before any work; :func:`estimate_cost` prices tokens (docs/imgedit.md, "Cost estimates and prices").
"""

from __future__ import annotations

import asyncio
import base64
import difflib
import logging
import os
import random
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from harness.api.scorer import Scorer
from harness.core.errors import HarnessError
from harness.core.hashing import content_hash
from harness.core.options import (
    INTEGER,
    NON_NEGATIVE_INT,
    NON_NEGATIVE_NUMBER,
    NUMBER,
    POSITIVE_INT,
    POSITIVE_NUMBER,
    Check,
    opt,
    optional,
)
from harness.core.secrets import redact, redact_url, register_secret, register_url, split_query

DEFAULT_MODEL = "gpt-4.1-2025-04-14"  # GPT-4.1 as a dated snapshot (docs/imgedit.md, "Judge request")
DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: seconds :meth:`OpenAIJudge.resolve` waits for the endpoint (at most; less if the judge's timeout is shorter)
RESOLVE_TIMEOUT = 10.0
#: USD per 1M (input, output) tokens, list prices as of 2025 (docs/imgedit.md, "Cost estimates and prices");
#: the longest matching name wins
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4.1": (2.0, 8.0), "gpt-4.1-mini": (0.4, 1.6), "gpt-4.1-nano": (0.1, 0.4),
    "gpt-4o": (2.5, 10.0), "gpt-4o-mini": (0.15, 0.6),
}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InlineImage:
    """An image part given as encoded bytes with their media type (e.g. ``image/jpeg`` made in memory)."""

    data: bytes
    media_type: str = "image/png"


@dataclass(frozen=True)
class JudgeRequest:
    """What to judge: the cache key and the user message's parts in order: text (str), an image file (Path) or
    an :class:`InlineImage`."""

    key: str
    content: Sequence[str | Path | InlineImage]


@dataclass
class JudgeResult:
    """One request's outcome: the answer (``ok``) or the failure reason, with usage and attempts.

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
    """USD for these tokens at the model's list price (or ``override``); None for a model without a price."""
    price = price_for(model, override)
    return None if price is None else (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6


def data_url(path: Path) -> str:
    """The official encoding: raw file bytes, base64, declared as PNG whatever the format."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def build_messages(content: Sequence[str | Path | InlineImage]) -> list[dict[str, Any]]:
    """One user message (no system prompt) whose parts are the texts and images of ``content``, in order."""
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, str):
            parts.append({"type": "text", "text": part})
        elif isinstance(part, InlineImage):
            url = f"data:{part.media_type};base64," + base64.b64encode(part.data).decode("ascii")
            parts.append({"type": "image_url", "image_url": {"url": url}})
        else:
            parts.append({"type": "image_url", "image_url": {"url": data_url(part)}})
    return [{"role": "user", "content": parts}]


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


def _or_none(check: Check) -> Check:
    return Check(f"{check.expected}, or none", lambda v: v is None or check(v), check.parse)


def _is_price(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(NON_NEGATIVE_NUMBER(v) for v in value)


_TEXT = Check("a non-empty text", lambda v: isinstance(v, str) and bool(v.strip()))
_ENV_NAME = Check("an environment variable name", lambda v: isinstance(v, str)
                  and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v) is not None)


class OpenAIJudge(Scorer):
    """An OpenAI-compatible chat endpoint (OpenAI, Azure-compatible proxies, vLLM, ...) as the judge.

    Built from keyword options (see ``defaults``); ``protocol`` (required) is the benchmark's short id of its
    message layout. Attributes of note: ``endpoint`` (the base URL without credentials), ``stats``.
    """

    name: ClassVar[str] = "openai"
    kind: ClassVar[str] = "judge"
    label: ClassVar[str] = "judge"
    option_flag: ClassVar[str] = "judge option"
    defaults: ClassVar[Mapping[str, Any]] = {
        "model": DEFAULT_MODEL, "base_url": None, "api_key_env": "OPENAI_API_KEY", "concurrency": 32,
        "max_retries": 6, "timeout": 120.0, "temperature": 0.0, "seed": 42, "max_tokens": None, "backoff": 1.0,
        "backoff_max": 60.0, "price": None, "cache": None, "protocol": None,
    }
    option_types: ClassVar[Mapping[str, Check]] = {
        "model": _TEXT, "base_url": _TEXT, "api_key_env": _ENV_NAME, "concurrency": POSITIVE_INT,
        "max_retries": NON_NEGATIVE_INT, "timeout": POSITIVE_NUMBER, "temperature": _or_none(NUMBER),
        "seed": _or_none(INTEGER), "max_tokens": POSITIVE_INT, "backoff": NON_NEGATIVE_NUMBER,
        "backoff_max": NON_NEGATIVE_NUMBER,
        "price": Check("IN,OUT: two numbers >= 0 (USD per 1M input and output tokens)", _is_price),
        "cache": Check("a file path", lambda v: isinstance(v, (str, os.PathLike)) and bool(str(v))),
        "protocol": _TEXT,
    }
    #: where it runs and how patiently: never part of the fingerprint (the base URL is part of cache keys)
    unhashed_options: ClassVar[frozenset[str]] = frozenset(
        {"base_url", "api_key_env", "concurrency", "max_retries", "timeout", "backoff", "backoff_max", "price",
         "cache"})

    def __init__(self, **options: Any):
        super().__init__(**options)
        o = self.options
        if o["protocol"] is None:
            raise HarnessError(f"judge {self.name!r}: protocol= is required (the benchmark's id of its message "
                               "layout, part of every cache key)")
        self.model: str = o["model"]
        self.protocol: str = o["protocol"]
        self.base_url = (o["base_url"] or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        register_url(self.base_url)
        self.endpoint = endpoint_id(self.base_url)
        self.api_key_env: str = o["api_key_env"]
        self.concurrency, self.max_retries, self.timeout = o["concurrency"], o["max_retries"], float(o["timeout"])
        self.temperature, self.seed, self.max_tokens = o["temperature"], o["seed"], o["max_tokens"]
        self.backoff, self.backoff_max = float(o["backoff"]), float(o["backoff_max"])
        self.price: tuple[float, float] | None = tuple(o["price"]) if o["price"] else None
        self._cache = Path(o["cache"]) if o["cache"] else None
        self.stats = JudgeStats()

    @property
    def cache_path(self) -> Path:
        """The SQLite answer cache: the ``cache`` option, else ``$HARNESS_CACHE/imgedit/judge-cache.sqlite``
        (where ImgEdit's answers always were; keys hold the protocol, so benchmarks can share it)."""
        if self._cache is None:
            from harness.core.datafiles import cache_dir

            self._cache = cache_dir() / "imgedit" / "judge-cache.sqlite"
        return self._cache

    # -- identity ---------------------------------------------------------------------------------------
    def parameters(self) -> dict[str, Any]:
        """Request parameters that can change answers (part of every cache key)."""
        return {"temperature": self.temperature, "seed": self.seed, "max_tokens": self.max_tokens,
                "message": self.protocol}

    def fingerprint(self) -> dict[str, Any]:
        """The judge's identity (never the key, nor the base URL's credentials)."""
        return {"judge": self.name, "model": self.model, **self.parameters()}

    def cache_key(self, fields: Mapping[str, Any]) -> str:
        """An answer's key: the benchmark's ``fields`` (what was asked) with the endpoint, the requested model
        and :meth:`parameters`; the same model name served by another endpoint is another judge."""
        clash = sorted({"endpoint", "model", "parameters"} & set(fields))
        if clash:
            raise ValueError(f"cache key fields may not be named {', '.join(clash)}")
        return content_hash({"endpoint": self.endpoint, "model": self.model, **fields,
                             "parameters": self.parameters()}, 32)

    def estimate_cost(self, prompt_tokens: int, completion_tokens: int, model: str | None = None) -> float | None:
        """USD for these tokens at ``model``'s (default: the requested model's) price or the ``price`` option."""
        return estimate_cost(model or self.model, prompt_tokens, completion_tokens, self.price)

    # -- readiness --------------------------------------------------------------------------------------
    def _api_key(self) -> str:
        key = os.environ.get(self.api_key_env)
        if key:
            register_secret(key)
            return key
        if self.base_url == DEFAULT_BASE_URL:
            raise HarnessError(f"the judge needs an API key: set {self.api_key_env} (or name another variable with "
                               "--judge-api-key-env), point --judge-base-url at a local server, or pass --no-score")
        return "EMPTY"  # local OpenAI-compatible servers (vLLM) accept any key

    def _client(self, openai: Any, *, asynchronous: bool, timeout: float) -> Any:
        _quiet_http_logs()
        url, query = split_query(self.base_url)
        cls = openai.AsyncOpenAI if asynchronous else openai.OpenAI
        return cls(api_key=self._api_key(), base_url=url, default_query=query or None, max_retries=0,
                   timeout=timeout)

    def resolve(self) -> None:
        """Fail in seconds, with one line, unless the key is there, the openai client is installed, the
        endpoint answers, accepts the key and serves the model (``GET /models/{model}``, else ``/models``;
        an endpoint without either route is taken on trust)."""
        self._api_key()
        try:
            import openai
        except ImportError as exc:
            raise HarnessError("the judge needs the openai client: pip install 'dreamlite-harness[imgedit]'") from exc
        wait = min(self.timeout, RESOLVE_TIMEOUT)
        client = self._client(openai, asynchronous=False, timeout=wait)
        try:
            served = self._served_models(openai, client)
        except openai.APITimeoutError:
            raise HarnessError(f"judge endpoint {self.endpoint} did not answer within {wait:g}s; check "
                               "--judge-base-url and that the server is up") from None
        except openai.APIConnectionError as exc:
            raise HarnessError(f"judge endpoint {self.endpoint} is unreachable ({_short(exc.__cause__ or exc)}); "
                               "check --judge-base-url and that the server is up") from None
        except openai.APIStatusError as exc:
            if exc.status_code in (401, 403):
                raise self._key_refused(exc.status_code) from None
            log.warning("judge endpoint %s: model check answered HTTP %s (%s); going on", self.endpoint,
                        exc.status_code, _short(exc))
            return
        except openai.APIError as exc:  # a model route that answers something else than a model: not decisive
            log.warning("judge endpoint %s: model check unreadable (%s); going on", self.endpoint, _short(exc))
            return
        finally:
            client.close()
        if served is None:
            log.info("judge endpoint %s has no /models route: model name %r not checked", self.endpoint, self.model)
        elif self.model not in served:
            close = difflib.get_close_matches(self.model, served, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else f"it serves {_listing(sorted(served))}"
            raise HarnessError(f"judge endpoint {self.endpoint} does not serve model {self.model!r} ({hint}); "
                               "check --judge-model")

    def _served_models(self, openai: Any, client: Any) -> set[str] | None:
        """The model names the endpoint serves, as far as needed: {model} if it knows it, None without routes."""
        try:
            client.models.retrieve(self.model)
            return {self.model}
        except openai.NotFoundError:
            pass  # unknown model, or no per-model route (vLLM serves only the list)
        try:
            return {m.id for m in client.models.list()}
        except openai.NotFoundError:
            return None

    def load(self) -> None:
        """Nothing to load: a client is opened per :meth:`judge_many`."""

    def _key_refused(self, status: int) -> HarnessError:
        return HarnessError(f"judge endpoint {self.endpoint} refused the API key (HTTP {status}); check "
                            f"{self.api_key_env}")

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

        client = self._client(openai, asynchronous=True, timeout=self.timeout)
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

        kwargs: dict[str, Any] = {"model": self.model, "messages": build_messages(req.content)}
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
                    raise self._key_refused(status) from None
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


def _quiet_http_logs() -> None:
    """The client libraries log every request at INFO: keep them at WARNING or above."""
    for name in ("openai", "httpx", "httpx2", "httpcore", "httpcore2"):
        logging.getLogger(name).setLevel(max(logging.getLogger(name).level, logging.WARNING))


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


def _listing(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" (+{len(names) - n} more)" if len(names) > n else "") if names else "no models"


# -- the judge's settings, shared by every benchmark that uses it ---------------------------------------------
PRICE = Check("IN,OUT in USD per 1M tokens, e.g. 2,8",
              lambda v: v is None or bool(re.fullmatch(r"\s*\d+(\.\d*)?\s*,\s*\d+(\.\d*)?\s*", v)))


def parse_price(text: str | None) -> tuple[float, float] | None:
    """``--judge-price IN,OUT`` (checked by :data:`PRICE`) as two numbers."""
    if not text:
        return None
    a, b = (float(x) for x in str(text).split(","))
    return a, b


@dataclass(frozen=True)
class JudgedEdit:
    """One edit for a judge: the benchmark's case, the edited image's name in the folder, the edited and source
    image (None: missing or not made), their sha256, the record's key, and why there is no image to judge."""

    case: Any
    name: str
    image: Path | None
    source: Path | None
    image_sha: str
    source_sha: str
    key: str
    failure: str | None = None


@dataclass
class JudgeConfig:
    """The judge flags of a benchmark scored by an OpenAI-compatible VLM (its config dataclass inherits them)."""

    judge: str = opt("openai", stage="score", help="judge backend (`harness list judges`)")
    judge_model: str = opt(DEFAULT_MODEL, stage="score",
                           help="model name sent to the endpoint (the dated model the endpoint returns is recorded)")
    judge_base_url: str | None = opt(None, stage="score",
                                     help="OpenAI-compatible base URL ending in /v1 (default $OPENAI_BASE_URL or "
                                          "api.openai.com)")
    judge_api_key_env: str = opt("OPENAI_API_KEY", stage="score",
                                 help="environment variable holding the API key (never written anywhere)")
    judge_concurrency: int = opt(32, check=POSITIVE_INT, stage="score", help="requests in flight at most")
    judge_retries: int = opt(6, check=NON_NEGATIVE_INT, stage="score", help="retries on 429/5xx/timeouts per request")
    judge_timeout: float = opt(120.0, check=POSITIVE_NUMBER, stage="score", help="seconds per request")
    temperature: float | None = opt(0.0, check=optional(NON_NEGATIVE_NUMBER), stage="score",
                                    help="judge temperature ('none' = not sent, as the official scripts)")
    judge_seed: int | None = opt(42, check=optional(INTEGER), stage="score", help="judge seed ('none' = not sent)")
    judge_max_tokens: int | None = opt(None, check=optional(POSITIVE_INT), stage="score",
                                       help="max_tokens (default: not sent)")
    judge_price: str | None = opt(None, check=PRICE, stage="score",
                                  help="USD per 1M tokens IN,OUT for the cost estimate")
    judge_cache: str | None = opt(None, stage="score", help="SQLite judge cache (default $HARNESS_CACHE/imgedit/...)")
    judge_batch_size: int = opt(256, check=POSITIVE_INT, stage="score", help="cases per durable record batch")


def build_judge(config: JudgeConfig, protocol: str, *, max_tokens: int | None = None) -> Any:
    """The judge a :class:`JudgeConfig` names, for a benchmark's message layout (``protocol``); options checked,
    nothing contacted yet (``resolve()`` does that)."""
    from harness.registry import registry

    c = config
    return registry("judges").load(c.judge)(
        model=c.judge_model, base_url=c.judge_base_url, api_key_env=c.judge_api_key_env,
        concurrency=c.judge_concurrency, max_retries=c.judge_retries, timeout=c.judge_timeout,
        temperature=c.temperature, seed=c.judge_seed, max_tokens=c.judge_max_tokens if max_tokens is None
        else max_tokens, price=parse_price(c.judge_price), cache=c.judge_cache, protocol=protocol)
