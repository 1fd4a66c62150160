"""Plugin registry over Python entry points, with lazy ``module:attr`` loading.

Five groups exist: ``harness.models``, ``harness.benchmarks``, ``harness.judges``, ``harness.detectors`` and
``harness.scorers``. The built-ins are the entry points of this project's own distribution (its
``pyproject.toml``) and load exactly the way a plugin's do. Nothing is imported until :meth:`Registry.load`
is called, so listing names never imports torch; a loaded object must subclass its group's base class.

Rules (lm-eval / llm style):

* built-ins win name clashes; the clash is logged naming both distributions;
* between two plugins the first distribution in alphabetical order wins, also with a warning;
* a malformed entry point is skipped with a warning; one that fails to import raises
  :class:`PluginLoadError` only when that name is loaded, never breaking the other names;
* every loaded entry carries its provenance (name, group, target, distribution, version).
"""

from __future__ import annotations

import difflib
import importlib
import logging
import re
from dataclasses import asdict, dataclass
from functools import cache
from importlib import metadata
from typing import Any

from harness.core.errors import PluginLoadError, UnknownNameError

log = logging.getLogger(__name__)

GROUPS = ("models", "benchmarks", "judges", "detectors", "scorers")
OWN_DISTRIBUTION = "dreamlite-harness"
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
#: what a loaded entry of each group must be (a subclass of): checked on every load
BASES = {
    "models": "harness.api.model:ImageModel",
    "benchmarks": "harness.api.reporting:Reportable",
    "judges": "harness.api.scorer:Scorer",
    "detectors": "harness.api.scorer:Scorer",
    "scorers": "harness.api.scorer:Scorer",
}


@dataclass(frozen=True)
class Entry:
    """One registered name and where it comes from."""

    name: str
    group: str
    target: str
    distribution: str
    version: str
    builtin: bool

    def provenance(self) -> dict[str, Any]:
        """Plain-data provenance, written into every run's metadata."""
        return asdict(self)


class Registry:
    """Names of one group mapped to lazily imported objects."""

    def __init__(self, group: str, entries: dict[str, Entry]):
        self.group = group
        self._entries = entries
        self._loaded: dict[str, Any] = {}

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        """All entries, sorted by name."""
        return [self._entries[n] for n in self.names()]

    def entry(self, name: str) -> Entry:
        """The entry for ``name``; unknown names raise with a "did you mean" suggestion."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(unknown_name_message(self.group, name, self.names())) from None

    def load(self, name: str) -> Any:
        """Import and return the object registered as ``name`` (cached)."""
        if name not in self._loaded:
            entry = self.entry(name)
            obj = import_target(entry)
            base = _base(self.group)
            if not (isinstance(obj, type) and issubclass(obj, base)):
                raise PluginLoadError(
                    f"{self.group[:-1]} {name!r} ({entry.target}, from {entry.distribution} {entry.version}) is not "
                    f"a {base.__module__}.{base.__qualname__} subclass; fix or uninstall that distribution.")
            self._loaded[name] = obj
        return self._loaded[name]

    def provenance_of(self, obj: Any) -> dict[str, Any]:
        """The provenance of an object (or class) of this group: its entry's, or its class path if unregistered."""
        cls = obj if isinstance(obj, type) else type(obj)
        target = f"{cls.__module__}:{cls.__qualname__}"
        name = getattr(obj, "name", None)
        by_target = [e for e in self._entries.values() if e.target == target]
        match = next((e for e in by_target if e.name == name), by_target[0] if by_target else None)
        if match is not None:
            return match.provenance()
        return {"name": name, "group": self.group, "target": target, "distribution": None, "version": None,
                "builtin": False}


def unknown_name_message(group: str, name: str, known: list[str]) -> str:
    """One line: the unknown name, close matches, and where to see the full list."""
    singular = group[:-1]
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    listing = ", ".join(known) if known else "none installed"
    return (
        f"unknown {singular} {name!r}.{hint} Known {group}: {listing} "
        f"(`harness list {group}`; plugins register under the entry-point group 'harness.{group}')."
    )


def import_target(entry: Entry) -> Any:
    """Import ``module:attr``; failures name the plugin, its distribution and the cause."""
    module_name, _, attr = entry.target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # any import-time failure of a plugin is reported, never propagated raw
        raise PluginLoadError(
            f"{entry.group[:-1]} {entry.name!r} ({entry.target}, from {entry.distribution} {entry.version}) "
            f"failed to load: {type(exc).__name__}: {exc}. Fix or uninstall that distribution."
        ) from exc
    return obj


def _base(group: str) -> type:
    module_name, _, attr = BASES[group].partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _discover(group: str) -> dict[str, Entry]:
    """Entry points of ``harness.<group>``: the project's own (built-ins) first, then plugins by distribution."""
    found = list(metadata.entry_points(group=f"harness.{group}"))
    if not any(ep.dist is not None and ep.dist.name == OWN_DISTRIBUTION for ep in found) and _own_missing():
        raise PluginLoadError(f"{OWN_DISTRIBUTION} is not installed, so its built-in {group} are not registered "
                              "(they are entry points, like plugins): run `pip install -e .` in the checkout")
    own = [ep for ep in found if ep.dist is not None and ep.dist.name == OWN_DISTRIBUTION]
    others = sorted((ep for ep in found if ep not in own), key=lambda ep: ((ep.dist.name if ep.dist else ""), ep.name))
    entries: dict[str, Entry] = {}
    for ep in [*sorted(own, key=lambda ep: ep.name), *others]:
        dist = ep.dist.name if ep.dist else "<unknown distribution>"
        version = ep.dist.version if ep.dist else "?"
        builtin = dist == OWN_DISTRIBUTION
        if not _TARGET.match(ep.value.strip()):
            log.warning(
                "skipping plugin %r in group harness.%s from %s %s: entry point value %r is not 'module:attr'",
                ep.name, group, dist, version, ep.value,
            )
            continue
        if ep.name in entries:
            kept = entries[ep.name]
            if kept.distribution != dist or not builtin:
                log.warning(
                    "plugin name clash in harness.%s: %r from %s %s is ignored; %s %r from %s %s is used",
                    group, ep.name, dist, version, "built-in" if kept.builtin else "plugin",
                    ep.name, kept.distribution, kept.version,
                )
            continue
        entries[ep.name] = Entry(ep.name, group, ep.value.strip(), dist, version, builtin)
    return entries


def _own_missing() -> bool:
    try:
        metadata.distribution(OWN_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return True
    return False


@cache
def registry(group: str) -> Registry:
    """The registry of one group (``models``, ``benchmarks``, ``judges``, ``detectors``), discovered once."""
    if group not in GROUPS:
        raise UnknownNameError(unknown_name_message("groups", group, list(GROUPS)))
    return Registry(group, _discover(group))


def refresh() -> None:
    """Forget discovered entry points (after installing a plugin in-process, e.g. in tests)."""
    registry.cache_clear()


def provenance_of(group: str, obj: Any) -> dict[str, Any]:
    """Provenance of a model, benchmark or scorer object (or class), registered or not."""
    return registry(group).provenance_of(obj)
