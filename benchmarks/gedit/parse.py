"""Reading VIEScore answers: the official parser (for parity) and a strict one.

* :func:`official_parse` is VIEScore's ``mllm_output_to_dict`` rule for rule (docs/gedit.md, "Parsing"): the text
  between two ``||V^=^V||`` delimiters, else from the first ``{`` to the last ``}``; without braces, on a later
  attempt (``give_up``) the official code draws a **random** score, which we never do: :data:`GUESS` is returned
  instead and the aggregation reports the interval it allows; else a bare ``[a, b]`` or a bare integer 0-10;
  then ``json.loads`` with newlines removed, and on failure the regex "fix_json" repair, returned unchecked.
* :func:`official_value` is what ``VIEScore.evaluate`` then computes: ``min(answer["score"])``; anything that
  makes it (or ``sqrt(SC * PQ)``) raise is :data:`ERROR` (the official driver then reruns the whole sample).
* :func:`strict_scores` accepts only a JSON object (or a bare list) whose ``score`` is exactly two numbers from 0
  to 10; anything else is a failure with its reason.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

DELIMITER = "||V^=^V||"
#: the official parser would draw ``random.randint(0, 10)`` here
GUESS = "guess"
#: the official code raises here (its driver reruns the whole sample)
ERROR = "error"
RATE_LIMIT = "rate_limit_exceeded"

_BARE_LIST = re.compile(r"^\[\d+, ?\d+\]$")


def fix_json(text: str) -> str:
    """The official repair: quote bare keys, wrap numeric values in ``[]``, quote other non-literal values."""
    fixed = re.sub(r"(\w+):", r'"\1":', text)

    def value(match: re.Match[str]) -> str:
        key, val, comma = match.groups()
        val = val.strip()
        if re.match(r"^-?\d+(\.\d+)?$", val):
            val = f"[{val}]"
        elif not re.match(r"^(true|false|null)$", val, re.IGNORECASE):
            val = f'"{val}"'
        return f"{key}: {val}{comma}"

    return re.sub(r'(".*?"):(.*?)(,|})', value, fixed)


def _int_0_to_10(text: str) -> bool:
    try:
        return 0 <= int(text) <= 10
    except ValueError:
        return False


def official_parse(text: str, give_up: bool) -> Any:
    """``mllm_output_to_dict(text, give_up_parsing=give_up)`` without the random draw: a parsed object (usually a
    dict), False (not parsed: the official loop asks again), :data:`GUESS`, :data:`RATE_LIMIT` or :data:`ERROR`."""
    if text == RATE_LIMIT:
        return RATE_LIMIT
    if text.count(DELIMITER) == 2:
        start, end = text.find(DELIMITER) + len(DELIMITER), text.rfind(DELIMITER)
    else:
        start, end = text.find("{"), text.rfind("}") + 1
        if start == -1 or end == 0:
            start, end = text.find("["), text.rfind("]") + 1
            if give_up:
                return GUESS
            if _BARE_LIST.match(text[start:end]):
                try:
                    scores = json.loads(text[start:end])
                except ValueError:  # \d also matches non-ASCII digits, which json refuses: the official raises
                    return ERROR
                return {"score": scores if isinstance(scores, list) else [scores]}
            if _int_0_to_10(text):
                return {"score": [int(text)]}
            return False
    if start == -1 or end == -1 or start == end:
        return False
    candidate = text[start:end].strip().replace("\n", "")
    try:
        data = json.loads(candidate)
        if not isinstance(data["score"], list):
            data["score"] = [data["score"]]
    except Exception:
        try:
            return json.loads(fix_json(candidate))
        except Exception:
            return False
    return data


def official_value(parsed: Any) -> Any:
    """``min(parsed["score"])`` as the official evaluation takes it: a number, :data:`GUESS`, or :data:`ERROR`
    where the official code would raise (no ``score``, an empty or non-numeric list, the rate-limit marker)."""
    if parsed is GUESS or parsed == GUESS:
        return GUESS
    try:
        value = min(parsed["score"])
    except Exception:
        return ERROR
    if isinstance(value, bool):  # True * PQ is PQ in Python
        return int(value)
    return value if isinstance(value, (int, float)) else ERROR


def official_overall(sc: float, pq: float) -> float | None:
    """``math.sqrt(SC * PQ)``; None where it raises (a negative product)."""
    try:
        return math.sqrt(sc * pq)
    except ValueError:
        return None


def strict_scores(text: str) -> tuple[list[float] | None, str]:
    """Two scores from 0 to 10 from a JSON object's ``score`` (or a bare two-number list), else None and why."""
    stripped = text.strip()
    if stripped.startswith("```"):  # a fenced block: its body
        stripped = re.sub(r"^```[A-Za-z]*\s*|\s*```$", "", stripped)
    if stripped.startswith("["):
        candidate = stripped
    elif text.count(DELIMITER) == 2:
        candidate = text[text.find(DELIMITER) + len(DELIMITER):text.rfind(DELIMITER)]
    else:
        start, end = text.find("{"), text.rfind("}")
        if start == -1 or end < start:
            return None, "no JSON object in the answer"
        candidate = text[start:end + 1]
    try:
        data = json.loads(candidate)
    except ValueError:
        return None, "the JSON in the answer does not parse"
    if isinstance(data, dict):
        if "score" not in data:
            return None, "no 'score' in the answer's JSON"
        data = data["score"]
    if not isinstance(data, list) or len(data) != 2:
        return None, f"'score' must be a list of two numbers, got {json.dumps(data)[:60]}"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 10
               for v in data):
        return None, f"scores must be numbers from 0 to 10, got {json.dumps(data)[:60]}"
    return [float(v) if isinstance(v, float) else v for v in data], ""
