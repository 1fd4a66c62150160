"""One options mechanism for everything that takes settings: model adapters, detectors, judges, scorers and
benchmark configs, from ``key=value`` text and command-line flags alike.

A component declares each option once, next to its default: a :class:`Configurable` (models, detectors,
judges, scorers) in its ``defaults`` and ``option_types`` mappings, a benchmark in the fields of its config
dataclass (declared with :func:`opt`, which also carries the help text and which stage the option is for).
:func:`check_options` checks given values against that declaration :func:`check_options` checks given values against
that declaration (or, for an undeclared option, against the type of its default: an integer default takes
integers, a boolean default only ``true``/``false``) and names the flag, the key and what was expected.
Command-line flags use the same checks through :meth:`Check.argtype`. Values are checked, never changed,
so settings hashes stay what they were.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.core.errors import HarnessError


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


def optional(check: Check) -> Check:
    """``none`` (None) or whatever ``check`` accepts."""
    return Check(f"{check.expected} or none", lambda v: v is None or check(v),
                 lambda text: None if text.strip().lower() in ("none", "null") else check.parse(text))


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


# -- key=value text --------------------------------------------------------------------------------------------
def parse_pairs(text: str | None, flag: str) -> dict[str, Any]:
    """``"dtype=float16,steps=4,weights=/path"`` → typed values (int, float, bool, None or str) by key."""
    out: dict[str, Any] = {}
    if not text:
        return out
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise HarnessError(f"{flag}: {part!r} is not key=value (example: steps=4,dtype=float16)")
        out[key] = coerce_text(value.strip())
    return out


def split_list(text: str | None) -> list[str] | None:
    """``"a, b,,c"`` → ``["a", "b", "c"]``; empty or None → None (no filter)."""
    items = [part.strip() for part in text.split(",") if part.strip()] if text else []
    return items or None


def coerce_text(value: str) -> Any:
    """Untyped text → int, float, bool, None or the text itself (what ``key=value`` options mean)."""
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


# -- components configured by key=value options ----------------------------------------------------------------
class Configurable:
    """Base of components configured by ``key=value`` options (model adapters, detectors, judges, scorers).

    Subclasses set ``name``, ``defaults`` (every accepted option with its default) and, where the default's
    type does not say it all, ``option_types`` (a :class:`Check` per option). ``self.options`` holds every
    option once checked; ``unhashed_options`` (where it runs, not what it computes) stay out of the fingerprint.
    """

    name: ClassVar[str] = "component"
    kind: ClassVar[str] = "component"
    option_flag: ClassVar[str] = "--options"
    defaults: ClassVar[Mapping[str, Any]] = {}
    option_types: ClassVar[Mapping[str, Check]] = {}
    unhashed_options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, **options: Any):
        self.options: dict[str, Any] = self.check_options(options)

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """Every option with its value (given or default), or one error naming the bad key and value."""
        return check_options(options, cls.defaults, flag=cls.option_flag, owner=f"{cls.kind} {cls.name!r}",
                             checks=cls.option_types)

    @classmethod
    def from_text(cls, text: str | None, **extra: Any) -> Configurable:
        """Built from ``key=value,...`` text (the command line's form) plus typed extras."""
        return cls(**{**parse_pairs(text, cls.option_flag), **extra})

    def option_fingerprint(self) -> dict[str, Any]:
        """The options that change results, sorted by name."""
        return {k: v for k, v in sorted(self.options.items()) if k not in self.unhashed_options}


# -- benchmark config dataclasses -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """One field of a config dataclass as the command line and the checks see it."""

    name: str
    default: Any
    check: Check | None
    help: str
    stage: str
    flag: str

    @property
    def switch(self) -> bool:
        """A flag without a value (a boolean that defaults to False)."""
        return self.default is False


def opt(default: Any = None, *, check: Check | None = None, help: str = "", stage: str = "run",
        flag: str | None = None) -> Any:
    """A config dataclass field with its check, help text, stage (``"run"``: generation only, ``"score"``:
    scoring, offered by ``harness run`` and ``harness score``) and command-line flag (default ``--name``)."""
    return dataclasses.field(default=default, metadata={"check": check, "help": help, "stage": stage, "flag": flag})


def config_fields(cls: Any) -> list[Field]:
    """The fields of a config dataclass (class or instance)."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        meta = f.metadata
        out.append(Field(f.name, default, meta.get("check") or inferred(default), meta.get("help", ""),
                         meta.get("stage", "run"), meta.get("flag") or "--" + f.name.replace("_", "-")))
    return out


def build_config(cls: type, values: Mapping[str, Any], *, owner: str) -> Any:
    """A config dataclass from values (typed, or command-line text parsed by each field's check).

    Unknown names and bad values are one line naming the flag, e.g. ``--limit '0': expected a positive
    integer``.
    """
    fields = {f.name: f for f in config_fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        close = [c for k in unknown for c in difflib.get_close_matches(k, list(fields), n=1)]
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        raise HarnessError(f"{owner}: unknown setting(s) {', '.join(map(repr, unknown))}{hint}; "
                           f"known: {', '.join(sorted(fields))}")
    checked = {}
    for name, value in values.items():
        spec = fields[name]
        if isinstance(value, str) and spec.check is not None and spec.check.parse is not str:
            with contextlib.suppress(TypeError, ValueError):
                value = spec.check.parse(value)
        if isinstance(value, str) and value.lower() in ("none", "null") and spec.default is None:
            value = None
        if not (value is None and spec.default is None) and spec.check is not None and not spec.check(value):
            raise HarnessError(f"{spec.flag} {value!r}: expected {spec.check.expected} ({owner})")
        checked[name] = value
    return cls(**checked)


def flags_to_values(fields: list[Field], argv: list[str], where: str,
                    common: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Command-line flags given as a list (``["--tags", "counting", "--parity"]``) → config values by field name.

    The same flags ``harness run``/``score`` take for the benchmark, without a command line to parse them (a
    nightly config); ``common`` maps further flags that take a value to names (``{"--out": "out"}``). Unknown
    flags are one line naming ``where``.
    """
    by_flag = {f.flag: f for f in fields}
    common = dict(common or {})
    values: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        flag, eq, inline = argv[i].partition("=")
        spec = by_flag.get(flag)
        if flag in common:
            name, switch = common[flag], False
        elif spec is None:
            close = difflib.get_close_matches(flag, list(by_flag), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise HarnessError(f"{where}: unknown flag {argv[i]!r}{hint}; known: "
                               f"{', '.join(sorted([*by_flag, *common]))}")
        else:
            name, switch = spec.name, spec.switch
        if switch:
            values[name] = True
            i += 1
            continue
        if eq:
            values[name] = inline
            i += 1
        elif i + 1 < len(argv):
            values[name] = argv[i + 1]
            i += 2
        else:
            raise HarnessError(f"{where}: flag {flag} needs a value")
    return values
