"""One validation point for typed option values: ``key=value`` options and command-line flags alike.

Model adapters (``--model-args``), detectors (``--detector-args``) and GenEval's constants (``--options``)
declare what each option accepts next to its default; :func:`check_options` checks given values against
that declaration (or, for an undeclared option, against the type of its default: an integer default takes
integers, a boolean default only ``true``/``false``) and names the flag, the key and what was expected.
Command-line flags use the same checks through :meth:`Check.argtype`. Values are checked, never changed,
so settings hashes stay what they were.
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.errors import HarnessError


@dataclass(frozen=True)
class Check:
    """What an option accepts: ``expected`` (for messages), a test, and a parser from command-line text."""

    expected: str
    accepts: Callable[[Any], bool]
    parse: Callable[[str], Any] = str

    def __call__(self, value: Any) -> bool:
        try:
            return bool(self.accepts(value))
        except (TypeError, ValueError):
            return False

    def argtype(self) -> Callable[[str], Any]:
        """An argparse ``type=``: parse the text, check it, or a one-line usage error naming the value."""

        def convert(text: str) -> Any:
            try:
                value = self.parse(text)
            except (TypeError, ValueError):
                value = text
            if not self(value):
                raise argparse.ArgumentTypeError(f"{text!r}: expected {self.expected}")
            return value

        convert.__name__ = self.expected
        return convert


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _parse_bool(text: str) -> bool | str:
    return {"true": True, "false": False}.get(text.strip().lower(), text)


_SIZE = re.compile(r"^\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?$")


def _is_size(value: Any) -> bool:
    """``N`` (an int) or ``"WxH"``/``"N"`` text, every side a positive integer."""
    if _is_int(value):
        return value > 0
    match = _SIZE.match(value) if isinstance(value, str) else None
    return bool(match) and all(int(side) > 0 for side in match.groups() if side is not None)


INTEGER = Check("an integer", _is_int, int)
POSITIVE_INT = Check("a positive integer", lambda v: _is_int(v) and v > 0, int)
NON_NEGATIVE_INT = Check("an integer >= 0", lambda v: _is_int(v) and v >= 0, int)
NUMBER = Check("a number", _is_number, float)
POSITIVE_NUMBER = Check("a number > 0", lambda v: _is_number(v) and v > 0, float)
NON_NEGATIVE_NUMBER = Check("a number >= 0", lambda v: _is_number(v) and v >= 0, float)
FRACTION = Check("a number from 0 to 1", lambda v: _is_number(v) and 0 <= v <= 1, float)
BOOLEAN = Check("true or false", lambda v: isinstance(v, bool), _parse_bool)
SIZE = Check("a positive size: N or WIDTHxHEIGHT (e.g. 1024 or 768x1024)", _is_size)


def either(literal: str, check: Check) -> Check:
    """``literal`` (e.g. ``"auto"``) or whatever ``check`` accepts."""
    return Check(f"{literal} or {check.expected}", lambda v: v == literal or check(v), check.parse)


def one_of(*values: str) -> Check:
    """One of these words."""
    return Check(f"one of {', '.join(values)}", lambda v: v in values)


def inferred(default: Any) -> Check | None:
    """The check implied by a default value's type (None: anything goes)."""
    if isinstance(default, bool):
        return BOOLEAN
    if _is_int(default):
        return INTEGER
    if isinstance(default, float):
        return NUMBER
    return None


def check_options(options: Mapping[str, Any], defaults: Mapping[str, Any], *, flag: str, owner: str,
                  checks: Mapping[str, Check] | None = None) -> dict[str, Any]:
    """``{**defaults, **options}`` once every key is known and every value passes its check.

    ``checks`` declares an option's :class:`Check`; an undeclared option is checked against its default's
    type. ``None`` (``key=none``) is accepted only where the default is ``None``.
    """
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(defaults), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise HarnessError(f"{flag}: unknown option {', '.join(hints)} for {owner}; "
                           f"accepted: {', '.join(sorted(defaults))}")
    for key, value in options.items():
        default = defaults[key]
        if value is None and default is None:
            continue
        check = (checks or {}).get(key) or inferred(default)
        if check is not None and not check(value):
            raise HarnessError(f"{flag} {key}={value!r}: expected {check.expected} ({owner}, default {default!r})")
    return {**defaults, **options}
