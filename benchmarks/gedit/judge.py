"""GEdit's part of the judge: the two VIEScore requests of a case, how their images are encoded, their cache fields.

The judge itself (concurrency, retries by cause, refusals, the answer cache, prices) is the shared
OpenAI-compatible judge of :mod:`harness.scorers.openai_judge`. Per case and attempt GEdit asks it two things
(docs/gedit.md, "Judge requests"):

* SC: the SC prompt with the instruction, the source image, the edited image;
* PQ: the PQ prompt, the edited image;

the edited image converted to RGB and resized to the source's size (bicubic), as the official scorer does. The
``gpt`` profile is the official GPT backend: text first, each image EXIF-transposed, converted to RGB and
re-encoded as JPEG at Pillow's default quality, ``max_tokens`` 1400; the ``qwen`` profile is the official
Qwen2.5-VL backend served behind an OpenAI-compatible endpoint: images first, PNG, 512 tokens. Images are
encoded only when a request is actually sent (a cached answer needs none).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.benchmarks.gedit.prompts import PQ_PROMPT, PQ_SHA256, SC_SHA256, sc_prompt
from harness.scorers.openai_judge import InlineImage, JudgeRequest

#: the official GPT backend's model name (an undated alias; the endpoint's dated answer is recorded)
DEFAULT_MODEL = "gpt-4.1"


@dataclass(frozen=True)
class Profile:
    """How one official backend asks: part order, image encoding, default ``max_tokens``, results folder name."""

    name: str
    backbone: str
    images_first: bool
    media_type: str
    max_tokens: int

    @property
    def protocol(self) -> str:
        """The judge's ``protocol``: part of every cache key (changing it asks everything again)."""
        order = "images, text" if self.images_first else "text, images"
        return (f"gedit-viescore-tie-v1/{self.name}: SC user[{order}: source, edited], PQ user[{order}: edited]; "
                f"{self.media_type} data urls; edited RGB resized to the source size (bicubic)")


PROFILES: dict[str, Profile] = {
    "gpt": Profile("gpt", "gpt4o", False, "image/jpeg", 1400),
    "qwen": Profile("qwen", "qwen25vl", True, "image/png", 512),
}


def encode(image: Any, media_type: str) -> bytes:
    """One image as the profile's backend sends it: JPEG (EXIF transpose, RGB, Pillow's default quality) or PNG."""
    from PIL import ImageOps

    buf = io.BytesIO()
    if media_type == "image/jpeg":
        ImageOps.exif_transpose(image).convert("RGB").save(buf, format="JPEG")
    else:
        image.save(buf, format="PNG")
    return buf.getvalue()


class CaseImages:
    """A case's source and edited image, prepared as the official scorer prepares them, encoded once on demand
    (:meth:`prepare` may run ahead in a worker thread; the request then finds them ready)."""

    def __init__(self, source: Path, edited: Path, media_type: str):
        self.source_path, self.edited_path, self.media_type = source, edited, media_type
        self._lock = threading.Lock()
        self._parts: tuple[InlineImage, InlineImage] | None = None

    def prepare(self) -> tuple[InlineImage, InlineImage]:
        from PIL import Image

        with self._lock:
            if self._parts is None:
                with Image.open(self.source_path) as src, Image.open(self.edited_path) as raw:
                    src.load()
                    edited = raw.convert("RGB").resize(src.size, Image.Resampling.BICUBIC)
                    self._parts = (InlineImage(encode(src, self.media_type), self.media_type),
                                   InlineImage(encode(edited, self.media_type), self.media_type))
            return self._parts

    def source(self) -> InlineImage:
        return self.prepare()[0]

    def edited(self) -> InlineImage:
        return self.prepare()[1]


class LazyContent(Sequence):
    """A request's parts; image parts are made when the client reads them (cached answers never do)."""

    def __init__(self, parts: list[str | Callable[[], InlineImage]]):
        self._parts = parts

    def __len__(self) -> int:
        return len(self._parts)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        part = self._parts[index]
        return part if isinstance(part, str) else part()


def requests(keys: tuple[str, str], instruction: str, images: CaseImages, profile: Profile) -> list[JudgeRequest]:
    """The SC and PQ requests of one attempt (their cache keys given)."""
    def content(text: str, parts: list[Callable[[], InlineImage]]) -> LazyContent:
        return LazyContent([*parts, text] if profile.images_first else [text, *parts])

    return [JudgeRequest(keys[0], content(sc_prompt(instruction), [images.source, images.edited])),
            JudgeRequest(keys[1], content(PQ_PROMPT, [images.edited]))]


def cache_fields(kind: str, *, case: str, instruction: str, source_sha: str, edited_sha: str,
                 attempt: int) -> dict[str, Any]:
    """What an answer depends on besides the judge (pass to ``OpenAIJudge.cache_key``): the question, its prompt's
    sha256, the case, both images (the source fixes the edited image's size for PQ too) and the attempt."""
    fields: dict[str, Any] = {"gedit": kind, "prompt_sha": SC_SHA256 if kind == "SC" else PQ_SHA256, "case": case,
                              "images": [source_sha, edited_sha], "attempt": attempt}
    if kind == "SC":
        fields["instruction"] = instruction
    return fields
