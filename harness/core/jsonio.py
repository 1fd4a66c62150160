"""Reading input text and JSON with one-line errors, and the one JSON writer (no NaN, no Infinity).

Input files (prompts, metadata, cases, rubrics, configs, summaries) are UTF-8; anything else is one
:class:`HarnessError` naming the file, the byte offset and the fix. JSON written by the harness is strict
JSON: Python's ``json`` would write ``NaN``/``Infinity``, which no other JSON reader accepts, so
:func:`dumps` writes a number that is not finite as ``null``: "no value", which is what it means here (a
mean over nothing, such as the score of a tag with no images).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError


def read_text(path: str | Path, fix: str = "save it as UTF-8") -> str:
    """The file's text (UTF-8), or one error naming the file and ``fix``."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise HarnessError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); {fix}") from None
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read it ({exc.strerror or type(exc).__name__})") from None


_KINDS = {dict: "a JSON object", list: "a JSON array", str: "a JSON string"}


def load_json(path: str | Path, fix: str, expect: type | None = dict) -> Any:
    """The file's JSON value, of type ``expect`` if given, or one error naming the file and ``fix``."""
    text = read_text(path, fix)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HarnessError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno}); {fix}") from None
    if expect is not None and not isinstance(data, expect):
        got = _KINDS.get(type(data), "null" if data is None else f"a JSON {type(data).__name__}")
        raise HarnessError(f"{path}: expected {_KINDS.get(expect, expect.__name__)}, found {got}; {fix}")
    return data


def finite(obj: Any) -> Any:
    """``obj`` with every float that is NaN or infinite replaced by ``None`` (in dicts, lists and tuples)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` for every JSON file the harness writes: strict JSON, non-finite numbers as ``null``."""
    return json.dumps(finite(obj), allow_nan=False, **kwargs)
