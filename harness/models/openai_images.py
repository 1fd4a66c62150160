"""API baseline: OpenAI's image-edit endpoint (``gpt-image-1``) as an editing model.

``POST /v1/images/edits`` with the source image (PNG) and the instruction; the answer's ``b64_json`` is
the edited image. The API takes no seed, so seeds are ignored (and the fingerprint says so): repeated
runs differ. The key is read from ``OPENAI_API_KEY`` (or the variable named by ``api_key_env``) and is
never stored; it and the base URL's credentials are masked in every message (``harness.core.secrets``).
Transient errors (429/5xx/timeouts) are retried by the openai client (``max_retries``); an edit the API
refuses (e.g. moderation, HTTP 400) stops the run with one line naming the case.
Importing this module does not import openai.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from harness.api.model import ImageModel
from harness.core.errors import HarnessError
from harness.core.options import NON_NEGATIVE_INT, POSITIVE_INT, POSITIVE_NUMBER, Check
from harness.core.secrets import redact, register_secret, register_url, split_query


class GPTImage1(ImageModel):
    """``gpt-image-1``: edits through an OpenAI-compatible ``images.edit`` endpoint."""

    name: ClassVar[str] = "gpt-image-1"
    capabilities: ClassVar[frozenset[str]] = frozenset({"edit"})
    defaults: ClassVar[dict[str, Any]] = {
        "model": "gpt-image-1",
        "size": "auto",  # auto, 1024x1024, 1536x1024, 1024x1536
        "quality": None,  # None = the API default; low, medium, high, auto
        "input_fidelity": None,  # None = the API default; low, high
        "base_url": None,  # default $OPENAI_BASE_URL or https://api.openai.com/v1
        "api_key_env": "OPENAI_API_KEY",
        "timeout": 300.0,
        "max_retries": 6,
        "concurrency": 4,
    }
    unhashed_options: ClassVar[frozenset[str]] = frozenset(
        {"base_url", "api_key_env", "timeout", "max_retries", "concurrency"})
    option_types: ClassVar[Mapping[str, Check]] = {
        "timeout": POSITIVE_NUMBER, "max_retries": NON_NEGATIVE_INT, "concurrency": POSITIVE_INT}

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.client: Any = None
        self.usage: dict[str, int] = {"input_tokens": 0, "output_tokens": 0, "requests": 0}

    def fingerprint(self) -> dict[str, Any]:
        return super().fingerprint() | {"seed": "not supported by the API (ignored)"}

    def load(self) -> None:
        key = os.environ.get(self.options["api_key_env"])
        register_secret(key)
        if not key:
            raise HarnessError(f"model {self.name!r} needs an API key: set {self.options['api_key_env']} (or "
                               "--model-args api_key_env=NAME)")
        try:
            import openai
        except ImportError as exc:
            raise HarnessError("model 'gpt-image-1' needs the openai client: pip install "
                               "'dreamlite-harness[imgedit]'") from exc
        base_url = self.options["base_url"] or os.environ.get("OPENAI_BASE_URL")
        register_url(base_url)
        query: dict[str, str] = {}
        if base_url:
            base_url, query = split_query(base_url)
        self.client = openai.OpenAI(api_key=key, base_url=base_url, default_query=query or None,
                                    timeout=float(self.options["timeout"]),
                                    max_retries=int(self.options["max_retries"]))

    def _edit_one(self, image: Any, instruction: str) -> Any:
        import openai
        from PIL import Image

        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="PNG")
        kwargs: dict[str, Any] = {"model": self.options["model"], "image": ("image.png", buf.getvalue(), "image/png"),
                                  "prompt": instruction, "size": self.options["size"], "n": 1}
        for name in ("quality", "input_fidelity"):
            if self.options[name] is not None:
                kwargs[name] = self.options[name]
        try:
            resp = self.client.images.edit(**kwargs)
        except openai.APIStatusError as exc:
            raise HarnessError(f"model {self.name!r}: the images endpoint refused the edit {instruction[:60]!r} "
                               f"(HTTP {exc.status_code}: {' '.join(redact(exc).split())[:200]})") from None
        except openai.APIConnectionError as exc:
            raise HarnessError(f"model {self.name!r}: no answer from the images endpoint ({redact(exc)}); rerun "
                               "to resume") from None
        usage = getattr(resp, "usage", None)
        self.usage["requests"] += 1
        self.usage["input_tokens"] += int(getattr(usage, "input_tokens", 0) or 0)
        self.usage["output_tokens"] += int(getattr(usage, "output_tokens", 0) or 0)
        if not resp.data or not resp.data[0].b64_json:
            raise HarnessError(f"model {self.name!r}: the images endpoint returned no b64_json image")
        return Image.open(io.BytesIO(base64.b64decode(resp.data[0].b64_json))).convert("RGB")

    def edit(self, images: Sequence[Any], instructions: Sequence[str], seeds: Sequence[int],
             **sampler: Any) -> list[Any]:
        """One API call per image, up to ``concurrency`` at a time; seeds are ignored (no API seed)."""
        if not len(images) == len(instructions) == len(seeds):
            raise ValueError("edit: one image and one seed per instruction")
        if sampler:
            raise HarnessError(f"model {self.name!r}: no per-call sampler options ({', '.join(sampler)})")
        self.ensure_loaded()
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max(1, int(self.options["concurrency"]))) as pool:
            return list(pool.map(self._edit_one, images, instructions))
