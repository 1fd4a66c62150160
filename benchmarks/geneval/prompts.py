"""GenEval prompt sets: the official 553 prompts (downloaded, sha256-checked), a built-in demo set,
or a custom JSONL file in the same schema.

Each line of the metadata file is one prompt: ``{"tag", "include", ["exclude"], "prompt"}``. Line N is
prompt folder ``NNNNN/`` in the official image layout, whatever subset of tags is run.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.api.benchmark import select_by_subset
from harness.benchmarks.geneval.classes import CLASS_NAMES
from harness.benchmarks.geneval.rules import TAGS, validate_metadata
from harness.core.datafiles import DataFile, fetch, sha256_file
from harness.core.errors import HarnessError
from harness.core.hashing import canonical_json
from harness.core.jsonio import read_text

UPSTREAM_COMMIT = "af4902f24d3ca90ebbb446dd9891a59e0f82725f"
OFFICIAL_METADATA = DataFile(
    name="evaluation_metadata.jsonl",
    url=f"https://raw.githubusercontent.com/djghosh13/geneval/{UPSTREAM_COMMIT}/prompts/evaluation_metadata.jsonl",
    sha256="5c48e0813e812e3c373fa5c8ed07a8f0a483be30272b4427b0559c8048e67c13",
    flag="--metadata",
)
OFFICIAL_COUNTS = {"single_object": 80, "two_object": 99, "counting": 80, "colors": 94, "position": 100,
                   "color_attr": 100}


_FOLDER = re.compile(r"[0-9]+")


def is_prompt_folder(name: str) -> bool:
    """A prompt folder name of the official layout: ASCII digits only (so it is a safe path component)."""
    return bool(_FOLDER.fullmatch(name))


def prompt_folder(index: object, *, where: str) -> str:
    """The folder ``NNNNN`` of prompt ``index``, or a one-line error naming ``where`` if it is not a line number."""
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise HarnessError(f"{where}: prompt index {index!r} must be a whole number >= 0 (a line of the metadata "
                           "file); rerun `harness run` to rewrite it")
    return f"{index:05d}"


@dataclass(frozen=True)
class PromptItem:
    """One prompt: its line index in the metadata file and the metadata object itself."""

    index: int
    metadata: dict[str, Any]

    @property
    def folder(self) -> str:
        """The official per-prompt folder name, ``NNNNN``."""
        return prompt_folder(self.index, where="prompt set")

    @property
    def tag(self) -> str:
        return self.metadata["tag"]

    @property
    def prompt(self) -> str:
        return self.metadata["prompt"]

    def sha256(self) -> str:
        """Content hash of the metadata object (canonical JSON), part of every work-unit key."""
        return hashlib.sha256(canonical_json(self.metadata).encode()).hexdigest()


@dataclass(frozen=True)
class PromptSet:
    """A loaded prompt set and where it came from."""

    name: str  # "official", "demo" or "custom"
    source: str
    sha256: str
    items: tuple[PromptItem, ...]

    def select(self, tags: Sequence[str] | None = None, limit: int | None = None) -> list[PromptItem]:
        """Prompts of the given tags (all if None), the first ``limit`` of each tag if given."""
        return select_by_subset(self.items, lambda item: item.tag, tags, limit, flag="--tags", subset_noun="tag",
                                known=TAGS)


def parse_metadata_lines(lines: Sequence[str], source: str) -> tuple[PromptItem, ...]:
    """Parse and validate metadata JSONL; errors name the file, the line and the field."""
    items = []
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        where = f"{source} line {n + 1}"
        try:
            meta = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HarnessError(f"{where}: not valid JSON ({exc.msg}); each line must be one JSON object") from exc
        try:
            validate_metadata(meta, CLASS_NAMES, where)
        except ValueError as exc:
            raise HarnessError(str(exc)) from exc
        items.append(PromptItem(len(items), meta))
    if not items:
        raise HarnessError(f"{source}: no prompts found; expected one JSON object per line")
    return tuple(items)


def load_prompts(prompts: str = "official", metadata: str | None = None) -> PromptSet:
    """Load ``official`` (download or ``metadata`` path, sha256-checked), ``demo``, or a custom path."""
    if prompts == "demo":
        lines = [canonical_json(m) for m in DEMO_METADATA]
        sha = hashlib.sha256("\n".join(lines).encode()).hexdigest()
        return PromptSet("demo", "built-in demo prompts", sha, parse_metadata_lines(lines, "demo prompts"))
    if prompts == "official":
        path = fetch(OFFICIAL_METADATA, metadata)
        name, sha = "official", OFFICIAL_METADATA.sha256
    else:
        path = Path(prompts)
        if not path.is_file():
            raise HarnessError(f"--prompts {prompts}: no such file; use 'official', 'demo' or a metadata JSONL path")
        sha = sha256_file(path)
        name = "official" if sha == OFFICIAL_METADATA.sha256 else "custom"
    text = read_text(path, "prompt files are UTF-8 JSON lines; re-save it as UTF-8")
    return PromptSet(name, str(path), sha, parse_metadata_lines(text.splitlines(), str(path)))


def _demo() -> list[dict[str, Any]]:
    """A small prompt set written by this project (4 prompts per tag), in the official schema."""
    single = ["dog", "car", "banana", "clock"]
    pairs = [("cat", "umbrella"), ("bus", "bench"), ("apple", "cup"), ("horse", "kite")]
    counts = [("bird", 2), ("bottle", 3), ("book", 4), ("chair", 2)]
    colored = [("car", "red"), ("vase", "blue"), ("bus", "yellow"), ("teddy bear", "pink")]
    positions = [("cup", "left of", "laptop"), ("cat", "above", "couch"), ("dog", "right of", "bicycle"),
                 ("clock", "below", "bird")]
    attrs = [("green", "chair", "white", "vase"), ("black", "cat", "orange", "frisbee"),
             ("purple", "umbrella", "brown", "bench"), ("blue", "cup", "red", "book")]
    numbers = {2: "two", 3: "three", 4: "four"}

    def a(word: str) -> str:
        return f"an {word}" if word[0] in "aeiou" else f"a {word}"

    def plural(word: str) -> str:
        return word + ("es" if word.endswith("s") else "s")

    out: list[dict[str, Any]] = []
    out += [{"tag": "single_object", "include": [{"class": c, "count": 1}], "prompt": f"a photo of {a(c)}"}
            for c in single]
    out += [{"tag": "two_object", "include": [{"class": x, "count": 1}, {"class": y, "count": 1}],
             "prompt": f"a photo of {a(x)} and {a(y)}"} for x, y in pairs]
    out += [{"tag": "counting", "include": [{"class": c, "count": n}], "exclude": [{"class": c, "count": n + 1}],
             "prompt": f"a photo of {numbers[n]} {plural(c)}"} for c, n in counts]
    out += [{"tag": "colors", "include": [{"class": c, "count": 1, "color": col}],
             "prompt": f"a photo of {a(col)} {c}"} for c, col in colored]
    out += [{"tag": "position",
             "include": [{"class": b, "count": 1}, {"class": x, "count": 1, "position": [rel, 0]}],
             "prompt": f"a photo of {a(x)} {rel} {a(b)}"} for x, rel, b in positions]
    out += [{"tag": "color_attr",
             "include": [{"class": x, "count": 1, "color": cx}, {"class": y, "count": 1, "color": cy}],
             "prompt": f"a photo of {a(cx)} {x} and {a(cy)} {y}"} for cx, x, cy, y in attrs]
    return out


DEMO_METADATA: tuple[dict[str, Any], ...] = tuple(_demo())
