"""One options mechanism for everything that takes settings: model adapters, detectors, judges, scorers and
benchmark configs.

A component declares its options once, either as a ``defaults`` mapping (``name -> default`` or
``name -> Opt(...)``) on a :class:`Configurable` subclass, or as the fields of a config dataclass (field
``metadata`` made with :func:`opt`). The same code then

* parses ``key=value,...`` text (``--model-args``, ``--detector-args``, ``--options``) into typed values,
* refuses unknown keys with a "did you mean", and values of the wrong type or out of range, in one line
  that names the flag and the key,
* fingerprints the options that change results (``hashed``), and
* gives the CLI what it needs to build flags (help, choices, kind) from a config dataclass.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.core.errors import HarnessError

_MISSING = object()


@dataclass(frozen=True)
class Opt:
    """How one option is declared: its default and what values it accepts."""

    default: Any = None
    help: str = ""
    #: int, float, bool or str; taken from the default when not given (a None default accepts any value)
    kind: type | None = None
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    #: whether None is accepted (defaults to: the default is None)
    nullable: bool | None = None
    #: part of the fingerprint (False for where something runs, not what it computes)
    hashed: bool = True
    #: a parser for text values with a special syntax (``1024`` or ``768x1024``); raises ValueError
    parse: Callable[[str], Any] | None = None
    #: the CLI flag when it is not ``--field-name`` (config dataclasses only)
    flag: str | None = None
    #: config dataclasses: "run" (generation only) or "score" (scoring; also offered by ``harness run``)
    stage: str = "run"
    #: an option that may be given as text of a comma-separated list
    listing: bool = False

    @property
    def value_kind(self) -> type | None:
        if self.kind is not None:
            return self.kind
        if self.default is None:
            return None
        return type(self.default)

    @property
    def accepts_none(self) -> bool:
        return self.default is None if self.nullable is None else self.nullable


def opt(default: Any = _MISSING, **kwargs: Any) -> Any:
    """A config dataclass field declared with an :class:`Opt` (``x: int = opt(4, min=1, help=...)``)."""
    spec = Opt(default=None if default is _MISSING else default, **kwargs)
    return dataclasses.field(default=spec.default, metadata={"opt": spec})


def spec_of(declared: Any) -> dict[str, Opt]:
    """The options of a ``defaults`` mapping or a config dataclass (class or instance), by name."""
    if dataclasses.is_dataclass(declared):
        out = {}
        for f in dataclasses.fields(declared):
            spec = f.metadata.get("opt")
            if spec is None:
                default = f.default if f.default is not dataclasses.MISSING else None
                spec = Opt(default=default)
            out[f.name] = spec
        return out
    return {k: v if isinstance(v, Opt) else Opt(default=v) for k, v in dict(declared).items()}


def parse_pairs(text: str | None, flag: str) -> dict[str, str]:
    """``"a=1,b=x"`` → ``{"a": "1", "b": "x"}`` (values stay text; typing happens in :func:`check_options`)."""
    out: dict[str, str] = {}
    if not text:
        return out
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise HarnessError(f"{flag}: {part.strip()!r} is not key=value (example: steps=4,dtype=float16)")
        if key in out:
            raise HarnessError(f"{flag}: {key!r} is given twice")
        out[key] = value.strip()
    return out


def coerce_text(value: str) -> Any:
    """Untyped ``key=value`` text → int, float, bool, None or str (for options without a declared kind)."""
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


_KIND_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "text"}


def _number(value: Any, kind: type, where: str) -> int | float:
    """An int (``kind`` int) or a number (``kind`` float: an int stays an int, as untyped text parsing gives)."""
    if isinstance(value, str):
        value = coerce_text(value.strip())
    if isinstance(value, float) and kind is int and value.is_integer():
        value = int(value)
    ok = isinstance(value, int) if kind is int else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok:
        raise HarnessError(f"{where}: expected {_KIND_NAMES[kind]}")
    if isinstance(value, float) and not math.isfinite(value):
        raise HarnessError(f"{where}: expected a finite number")
    return value


def check_value(name: str, value: Any, spec: Opt, flag: str) -> Any:
    """One option value, parsed from text if need be and checked against its declaration."""
    where = f"{flag} {name}={value!r}"
    if isinstance(value, str) and value.strip().lower() in ("none", "null") and spec.accepts_none:
        return None
    if value is None:
        if spec.accepts_none:
            return None
        raise HarnessError(f"{where}: a value is required (default {spec.default!r})")
    kind = spec.value_kind
    if spec.parse is not None and isinstance(value, str):
        try:
            value = spec.parse(value)
        except (ValueError, TypeError) as exc:
            raise HarnessError(f"{where}: {exc}") from None
    elif kind is bool:
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
            value = value.strip().lower() in ("true", "1", "yes")
        elif not isinstance(value, bool):
            raise HarnessError(f"{where}: expected true or false")
    elif kind in (int, float):
        value = _number(value, kind, where)
    elif kind is str:
        if not isinstance(value, str):
            value = str(value)
    elif kind is None and isinstance(value, str):
        value = coerce_text(value)
    if spec.choices is not None and value not in spec.choices:
        raise HarnessError(f"{where}: use one of {', '.join(str(c) for c in spec.choices)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if spec.min is not None and value < spec.min:
            raise HarnessError(f"{where}: must be >= {spec.min:g}")
        if spec.max is not None and value > spec.max:
            raise HarnessError(f"{where}: must be <= {spec.max:g}")
    return value


def check_options(values: Mapping[str, Any], spec: Mapping[str, Opt], *, flag: str, owner: str) -> dict[str, Any]:
    """All options with defaults filled in; unknown keys and bad values are one-line errors.

    ``flag`` is the CLI flag the values came from (``--model-args``), ``owner`` what they configure
    (``model 'tiny'``); both appear in the message.
    """
    unknown = [k for k in values if k not in spec]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(spec), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise HarnessError(f"{flag}: unknown option {', '.join(hints)} for {owner}; accepted: "
                           f"{', '.join(sorted(spec)) or 'none'}")
    out = {name: s.default for name, s in spec.items()}
    for name, value in values.items():
        out[name] = check_value(name, value, spec[name], flag)
    return out


def fingerprint_of(options: Mapping[str, Any], spec: Mapping[str, Opt]) -> dict[str, Any]:
    """The hashed options, sorted by name."""
    return {k: options[k] for k in sorted(options) if spec.get(k, Opt()).hashed}


def build_config(cls: type, values: Mapping[str, Any], *, flag: str = "config", owner: str = "") -> Any:
    """A config dataclass instance from (text or typed) values, checked as :func:`check_options` does."""
    spec = spec_of(cls)
    checked = check_options(values, spec, flag=flag, owner=owner or cls.__name__)
    return cls(**checked)


class Configurable:
    """Base of components configured by ``key=value`` options (adapters, detectors, judges, scorers).

    Subclasses set ``name`` and ``defaults`` (``name -> default`` or ``name -> Opt``); ``option_flag``
    names the CLI flag in errors. ``self.options`` holds every option, typed, defaults filled in.
    """

    name: ClassVar[str] = "component"
    kind: ClassVar[str] = "component"
    option_flag: ClassVar[str] = "options"
    defaults: ClassVar[Mapping[str, Any]] = {}
    #: options that do not change results (where it runs), left out of the fingerprint
    unhashed_options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, **options: Any):
        self.options: dict[str, Any] = check_options(options, self.option_spec(), flag=self.option_flag,
                                                     owner=f"{self.kind} {self.name!r}")

    @classmethod
    def option_spec(cls) -> dict[str, Opt]:
        spec = spec_of(cls.defaults)
        for name in cls.unhashed_options:
            if name in spec:
                spec[name] = dataclasses.replace(spec[name], hashed=False)
        return spec

    @classmethod
    def from_text(cls, text: str | None, **extra: Any) -> Configurable:
        """Build from ``key=value,...`` text (the CLI's form) plus typed extras."""
        return cls(**{**parse_pairs(text, cls.option_flag), **extra})

    def option_fingerprint(self) -> dict[str, Any]:
        return fingerprint_of(self.options, self.option_spec())
