"""A loopback HTTP server speaking the OpenAI chat-completions and images-edit APIs, with faults.

It validates requests as the real API does (bearer key, known model, message roles, content parts,
``image_url`` data URLs with a declared image MIME and valid base64, temperature range, multipart image
uploads) and answers 400/401/404 with OpenAI-shaped error bodies otherwise. The judge's answer is
computed from the request (the rubric's three labels, scores derived from the image bytes), so it is
deterministic. Configurable per-request latency and injected faults: 429 with Retry-After, 500, a
timeout (the server holds the request), a dropped connection (closed without an answer), truncated JSON,
odd answer formats, wrong score counts, out-of-range scores, content-filter refusals. A VIEScore prompt (GEdit's
SC and PQ questions) is answered in VIEScore's JSON format, ``{"score": [a, b], "reasoning": ...}``;
``viescore_mixed_answer`` mixes the formats its parser meets. ``GET /v1/models`` and
``/v1/models/{id}`` list the chat and image model names (``serve_models=False``: 404, as on endpoints without
them; ``serve_model_ids=False``: the list only, as vLLM). A query string on the path is ignored, and
``basic_auth`` accepts a base URL's ``user:password@`` in place of the key.

Use in tests: ``with serve(latency=0.3, fault=every_nth(10, "429")) as srv: ... srv.url ...``.
Standalone: ``python tests/peers/openai_server.py --latency 0.3`` prints its base URL.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHAT_MODELS = {"gpt-4.1": "gpt-4.1-2025-04-14", "gpt-4.1-2025-04-14": "gpt-4.1-2025-04-14",
               "gpt-4o": "gpt-4o-2024-08-06", "gpt-4o-2024-08-06": "gpt-4o-2024-08-06",
               "judge-small": "judge-small"}
IMAGE_MODELS = {"gpt-image-1", "gpt-image-1.5", "gpt-image-1-mini"}
DATA_URL = re.compile(r"^data:image/(png|jpeg|jpg|webp|gif);base64,([A-Za-z0-9+/=]+)$")
LABEL_LINE = re.compile(r"^(.+?): A number from 1 to 5\.\s*$", re.MULTILINE)
FAULTS = ("429", "500", "timeout", "disconnect", "truncated", "odd", "two_scores", "four_scores", "out_of_range",
          "content_filter", "empty")

Fault = Callable[[int, dict[str, Any]], "str | None"]


def every_nth(n: int, kind: str) -> Fault:
    """Fault request number 0, n, 2n, ... with ``kind``."""
    return lambda i, body: kind if i % n == 0 else None


def random_faults(rate: float, kinds: tuple[str, ...] = ("429", "500", "timeout", "truncated"),
                  seed: int = 0) -> Fault:
    """Each request independently faulted with probability ``rate``, kind drawn uniformly (seeded)."""
    import random

    rng = random.Random(seed)
    lock = threading.Lock()

    def pick(i: int, body: dict[str, Any]) -> str | None:
        with lock:
            return rng.choice(kinds) if rng.random() < rate else None
    return pick


@dataclass
class ServerState:
    """Configuration and counters (read them after a run; every counter is updated under ``lock``)."""

    api_key: str | None = "sk-test-loopback"
    basic_auth: str | None = None  # "user:password" also accepted (a base URL with userinfo sends Basic auth)
    latency: float = 0.0
    hold: float = 5.0  # how long a "timeout" fault holds the request
    retry_after: str = "0"
    fault: Fault | None = None
    answer: Callable[[dict[str, Any], list[str]], str] | None = None
    requests: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    keep_bodies: bool = False
    serve_models: bool = True  # GET /v1/models and /v1/models/{id}; off: 404 like an endpoint without them
    serve_model_ids: bool = True  # GET /v1/models/{id}; off: only the list, as vLLM
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    counter: int = 0


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None):
        super().__init__(message)
        self.status, self.body = status, {"error": {"message": message, "type": type_, "param": param, "code": code}}


VIESCORE_MARK = '"score" : [...]'  # VIEScore's output instruction, in every SC and PQ prompt


def _prompt_text(body: dict[str, Any]) -> str:
    return next(p["text"] for p in body["messages"][0]["content"] if p["type"] == "text")


def viescore_scores(body: dict[str, Any], images: list[bytes]) -> tuple[str, int, int]:
    """The question (SC or PQ) and two scores 0-10 derived from the image bytes and the question."""
    kind = "SC" if "Editing instruction:" in _prompt_text(body) else "PQ"
    digest = hashlib.sha256(kind.encode() + b"".join(images)).digest()
    return kind, digest[0] % 11, digest[1] % 11


def viescore_answer(body: dict[str, Any], images: list[bytes]) -> str:
    """VIEScore's answer format: a JSON object with two scores and a short reasoning."""
    kind, a, b = viescore_scores(body, images)
    return json.dumps({"score": [a, b], "reasoning": f"deterministic loopback judge ({kind})"})


#: recorded-style VIEScore answer formats and their share of the answers (the rest is plain JSON)
VIESCORE_FORMATS = (("fenced", 0.10), ("delimited", 0.05), ("bare_list", 0.05), ("bare_int", 0.03),
                    ("bare_keys", 0.04), ("three_scores", 0.04), ("out_of_range", 0.03), ("string_scores", 0.03),
                    ("prose", 0.04), ("broken_braces", 0.03))


def viescore_format(kind: str, a: int, b: int, style: str) -> str:
    """One answer of two scores in a named format (``plain`` or one of :data:`VIESCORE_FORMATS`)."""
    plain = json.dumps({"score": [a, b], "reasoning": "loopback"})
    return {"plain": plain, "fenced": f"```json\n{plain}\n```", "delimited": f"||V^=^V||{plain}||V^=^V||",
            "bare_list": f"[{a}, {b}]", "bare_int": str(min(a, b)),
            "bare_keys": f"{{score: {min(a, b)}, reasoning: loopback}}",
            "three_scores": json.dumps({"score": [a, b, max(a, b)], "reasoning": "three"}),
            "out_of_range": json.dumps({"score": [a + 11, b], "reasoning": "out of range"}),
            "string_scores": json.dumps({"score": [str(a), str(b)], "reasoning": "strings"}),
            "prose": f"The edit deserves {a} for success and {b} for overediting.",
            "broken_braces": f"{{score is {a} and {b}}}"}[style]


def viescore_mixed_answer(body: dict[str, Any], images: list[bytes]) -> str:
    """VIEScore answers in mixed formats, chosen by the images and the question (so the same request always gets
    the same answer): plain JSON mostly, and each of :data:`VIESCORE_FORMATS` at its share."""
    kind, a, b = viescore_scores(body, images)
    h = hashlib.sha256(b"format" + kind.encode() + b"".join(images)).digest()[0] / 256
    for style, share in VIESCORE_FORMATS:
        if h < share:
            return viescore_format(kind, a, b, style)
        h -= share
    return viescore_format(kind, a, b, "plain")


def default_answer(body: dict[str, Any], images: list[bytes]) -> str:
    """``Brief reasoning`` + the rubric's three labels, scores 1-5 derived from the image bytes (a VIEScore prompt:
    :func:`viescore_answer`)."""
    text = _prompt_text(body)
    if VIESCORE_MARK in text:
        return viescore_answer(body, images)
    labels = LABEL_LINE.findall(text) or ["Score 1", "Score 2", "Score 3"]
    digest = hashlib.sha256(b"".join(images)).digest()
    first = 1 + digest[0] % 5
    scores = [first] + [1 + digest[i] % first for i in (1, 2)]
    return "Brief reasoning: deterministic loopback judge.\n" + "\n".join(
        f"{label}: {s}" for label, s in zip(labels, scores, strict=False))


def mixed_answer(body: dict[str, Any], images: list[bytes]) -> str:
    """A recorded-style mix: 6% bold labels, 3% two scores, 2% a 10, the rest plain (by the edited image); VIEScore
    prompts get :func:`viescore_mixed_answer`."""
    if VIESCORE_MARK in _prompt_text(body):
        return viescore_mixed_answer(body, images)
    text = default_answer(body, images)
    h = hashlib.sha256(images[-1]).digest()[5] / 255
    lines = text.splitlines()
    if h < 0.06:
        return "\n".join(f"**{ln.replace(': ', ':** ', 1)}" if ln[-1].isdigit() else ln for ln in lines)
    if h < 0.09:
        return "\n".join(lines[:3])
    if h < 0.11:
        return text[:-1] + "10"
    return text


def _odd(answer: str, kind: str) -> str:
    lines = answer.splitlines()
    scored = [ln for ln in lines if re.search(r": \d+$", ln)]
    if kind == "odd":  # markdown bold labels and "/5": the official parser cannot read these
        return "\n".join(f"**{ln.split(': ')[0]}:** {ln.split(': ')[1]}/5" if ln in scored else ln for ln in lines)
    if kind == "two_scores":
        return "\n".join(ln for ln in lines if ln not in scored[2:])
    if kind == "four_scores":
        return answer + "\nOverall: 3"
    if kind == "out_of_range":
        return answer.replace(scored[0], scored[0].rsplit(": ", 1)[0] + ": 7")
    return answer


def _model_entry(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 1700000000, "owned_by": "loopback"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, payload: bytes, ctype: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        with self.server.state.lock:
            self.server.state.statuses[status] += 1
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        with suppress(OSError):
            self.wfile.write(payload)

    def do_GET(self) -> None:
        """``GET /v1/models`` and ``/v1/models/{id}`` (unless ``serve_models`` is off: 404 as for any unknown
        route); ``GET /stats``: the counters, for a peer running in another process."""
        st: ServerState = self.server.state
        path = self.path.split("?", 1)[0]
        if path == "/stats":
            with st.lock:
                stats = {"requests": dict(st.requests), "faults": dict(st.faults), "statuses": dict(st.statuses),
                         "max_in_flight": st.max_in_flight}
            return self._send(200, json.dumps(stats).encode())
        with st.lock:
            st.requests["GET " + path] += 1
        try:
            if not self._authorized(st):
                raise ApiError(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
            by_id = path.startswith("/v1/models/") and st.serve_model_ids
            if not st.serve_models or not (path == "/v1/models" or by_id):
                raise ApiError(404, f"Invalid URL (GET {self.path})")
            served = sorted({*CHAT_MODELS, *IMAGE_MODELS})
            if path == "/v1/models":
                payload: dict[str, Any] = {"object": "list", "data": [_model_entry(m) for m in served]}
            else:
                model = path[len("/v1/models/"):]
                if model not in served:
                    raise ApiError(404, f"The model '{model}' does not exist", code="model_not_found", param="model")
                payload = _model_entry(model)
            self._send(200, json.dumps(payload).encode())
        except ApiError as exc:
            self._send(exc.status, json.dumps(exc.body).encode())

    def do_POST(self) -> None:
        st: ServerState = self.server.state
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?", 1)[0]  # a query string (e.g. ?api-version=) does not change the route
        with st.lock:  # Counter += is not atomic: unlocked, concurrent first requests lose counts
            number = st.counter
            st.counter += 1
            st.in_flight += 1
            st.max_in_flight = max(st.max_in_flight, st.in_flight)
            st.requests[path] += 1
        try:
            if st.latency:
                time.sleep(st.latency)
            try:
                if not self._authorized(st):
                    raise ApiError(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
                if path == "/v1/chat/completions":
                    self._chat(st, raw, number)
                elif path == "/v1/images/edits":
                    self._edit(st, raw)
                else:
                    raise ApiError(404, f"Invalid URL (POST {self.path})")
            except ApiError as exc:
                self._send(exc.status, json.dumps(exc.body).encode())
        finally:
            with st.lock:
                st.in_flight -= 1

    def _authorized(self, st: ServerState) -> bool:
        given = self.headers.get("Authorization")
        if st.basic_auth is not None and given == "Basic " + base64.b64encode(st.basic_auth.encode()).decode():
            return True
        return st.api_key is None or given == f"Bearer {st.api_key}"

    # -- chat -----------------------------------------------------------------------------------------
    def _chat(self, st: ServerState, raw: bytes, number: int) -> None:
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            raise ApiError(400, "We could not parse the JSON body of your request.") from None
        images = validate_chat(body)
        if st.keep_bodies:
            with st.lock:
                st.bodies.append(body)
        kind = st.fault(number, body) if st.fault else None
        if kind:
            with st.lock:
                st.faults[kind] += 1
        if kind == "429":
            raise_headers = {"Retry-After": st.retry_after}
            payload = {"error": {"message": "Rate limit reached", "type": "requests", "param": None,
                                 "code": "rate_limit_exceeded"}}
            return self._send(429, json.dumps(payload).encode(), headers=raise_headers)
        if kind == "500":
            raise ApiError(500, "The server had an error while processing your request.", "server_error")
        if kind == "timeout":
            time.sleep(st.hold)
            raise ApiError(504, "held past the client's timeout", "server_error")
        if kind == "disconnect":  # close the connection without a response
            self.close_connection = True
            return None
        answer = (st.answer or default_answer)(body, images)
        if kind in ("odd", "two_scores", "four_scores", "out_of_range"):
            answer = _odd(answer, kind)
        finish = "stop"
        content: str | None = answer
        if kind == "content_filter":
            finish, content = "content_filter", None
        if kind == "empty":
            content = ""
        model = CHAT_MODELS[body["model"]]
        payload = {
            "id": f"chatcmpl-{number}", "object": "chat.completion", "created": int(time.time()), "model": model,
            "system_fingerprint": "fp_loopback",
            "choices": [{"index": 0, "finish_reason": finish, "logprobs": None,
                         "message": {"role": "assistant", "content": content, "refusal": None}}],
            "usage": {"prompt_tokens": 400 + 765 * len(images), "completion_tokens": len(answer.split()) + 20,
                      "total_tokens": 400 + 765 * len(images) + len(answer.split()) + 20},
        }
        data = json.dumps(payload).encode()
        if kind == "truncated":
            data = data[: len(data) // 2]
        self._send(200, data)

    # -- images ---------------------------------------------------------------------------------------
    def _edit(self, st: ServerState, raw: bytes) -> None:
        ctype = self.headers.get("Content-Type", "")
        if not ctype.startswith("multipart/form-data"):
            raise ApiError(400, "Invalid Content-Type header; expected multipart/form-data")
        msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
        fields: dict[str, Any] = {}
        files: list[bytes] = []
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            data = part.get_payload(decode=True)
            if name in ("image", "image[]"):
                files.append(data)
            else:
                fields[name] = data.decode()
        if fields.get("model") not in IMAGE_MODELS:
            raise ApiError(400 if "model" not in fields else 404, f"The model '{fields.get('model')}' does not "
                           "exist or is not an image model", code="model_not_found")
        if not fields.get("prompt"):
            raise ApiError(400, "Missing required parameter: 'prompt'.", param="prompt")
        if not files:
            raise ApiError(400, "Missing required parameter: 'image'.", param="image")
        from PIL import Image, ImageOps

        try:
            im = Image.open(io.BytesIO(files[0]))
            im.load()
        except Exception:
            raise ApiError(400, "Invalid image file or mode for image 1", param="image") from None
        if im.format not in ("PNG", "JPEG", "WEBP"):
            raise ApiError(400, f"Unsupported image format {im.format}", param="image")
        size = fields.get("size", "auto")
        if size not in ("auto", "1024x1024", "1536x1024", "1024x1536"):
            raise ApiError(400, f"Invalid value: '{size}'.", param="size")
        out = ImageOps.invert(im.convert("RGB"))
        if size != "auto":
            w, h = (int(x) for x in size.split("x"))
            out = out.resize((w, h))
        buf = io.BytesIO()
        out.save(buf, format="PNG")
        payload = {"created": int(time.time()), "data": [{"b64_json": base64.b64encode(buf.getvalue()).decode()}],
                   "usage": {"input_tokens": 300, "output_tokens": 1056, "total_tokens": 1356,
                             "input_tokens_details": {"image_tokens": 250, "text_tokens": 50}}}
        self._send(200, json.dumps(payload).encode())


def validate_chat(body: Any) -> list[bytes]:
    """Check a chat request like the API does; returns the decoded image bytes."""
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str):
        raise ApiError(400, "you must provide a model parameter", param="model")
    if model not in CHAT_MODELS:
        raise ApiError(404, f"The model `{model}` does not exist or you do not have access to it.",
                       code="model_not_found")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty array.", param="messages")
    t = body.get("temperature")
    if t is not None and not (isinstance(t, (int, float)) and 0 <= t <= 2):
        raise ApiError(400, f"Invalid 'temperature': {t}", param="temperature")
    if "seed" in body and not isinstance(body["seed"], int):
        raise ApiError(400, "Invalid 'seed': expected an integer.", param="seed")
    images = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "developer"):
            raise ApiError(400, f"Invalid 'messages[{i}].role'.", param=f"messages[{i}].role")
        content = m.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list) or not content:
            raise ApiError(400, f"Invalid 'messages[{i}].content'.", param=f"messages[{i}].content")
        for j, part in enumerate(content):
            where = f"messages[{i}].content[{j}]"
            if not isinstance(part, dict) or part.get("type") not in ("text", "image_url"):
                raise ApiError(400, f"Invalid '{where}.type'.", param=where)
            if part["type"] == "text":
                if not isinstance(part.get("text"), str):
                    raise ApiError(400, f"Invalid '{where}.text'.", param=where)
                continue
            if m["role"] != "user":
                raise ApiError(400, f"Image content parts are only allowed in user messages ({where}).", param=where)
            url = (part.get("image_url") or {}).get("url") if isinstance(part.get("image_url"), dict) else None
            match = DATA_URL.match(url or "")
            if not match:
                raise ApiError(400, f"Invalid image URL in '{where}.image_url.url': expected a data URL with a "
                                    "base64 image.", code="invalid_image_url", param=where)
            try:
                data = base64.b64decode(match[2], validate=True)
            except ValueError:
                raise ApiError(400, f"Invalid base64 image data in '{where}'.", code="invalid_image_format") from None
            if not (data.startswith(b"\x89PNG") or data.startswith(b"\xff\xd8") or data[8:12] == b"WEBP"):
                raise ApiError(400, f"You uploaded an unsupported image in '{where}'.", code="invalid_image_format")
            images.append(data)
    return images


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    allow_reuse_address = True

    def __init__(self, state: ServerState, port: int = 0):
        super().__init__(("127.0.0.1", port), Handler)
        self.state = state

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@contextmanager
def serve(port: int = 0, **config: Any) -> Iterator[LoopbackServer]:
    """Start a server on 127.0.0.1 (``port``, default any free one) in a thread; stop it on exit."""
    server = LoopbackServer(ServerState(**config), port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--api-key", default="sk-test-loopback")
    p.add_argument("--fault-rate", type=float, default=0.0)
    p.add_argument("--fault-kinds", default="429,500,timeout,truncated")
    p.add_argument("--fault-seed", type=int, default=0)
    p.add_argument("--hold", type=float, default=5.0, help="seconds a 'timeout' fault holds the request")
    p.add_argument("--retry-after", default="0")
    p.add_argument("--answers", choices=["default", "mixed"], default="default")
    p.add_argument("--no-models", action="store_true", help="serve no GET /v1/models routes (404)")
    args = p.parse_args()
    kinds = tuple(args.fault_kinds.split(","))
    fault = random_faults(args.fault_rate, kinds, args.fault_seed) if args.fault_rate else None
    server = LoopbackServer(ServerState(api_key=args.api_key, latency=args.latency, fault=fault, hold=args.hold,
                                        retry_after=args.retry_after, serve_models=not args.no_models,
                                        answer=mixed_answer if args.answers == "mixed" else None))
    print(server.url, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
