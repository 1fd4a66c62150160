"""Plugin registry over Python entry points, with lazy ``module:attr`` loading.

Four groups exist: ``harness.models``, ``harness.benchmarks``, ``harness.judges`` and ``harness.detectors``.
Built-ins are listed here as ``module:attr`` strings; third-party distributions add entries through entry
points. Nothing is imported until :meth:`Registry.load` is called, so listing names never imports torch.

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

from harness import __version__
from harness.errors import PluginLoadError, UnknownNameError

log = logging.getLogger(__name__)

GROUPS = ("models", "benchmarks", "judges", "detectors")
OWN_DISTRIBUTION = "dreamlite-harness"
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

BUILTINS: dict[str, dict[str, str]] = {
    "models": {
        "tiny": "harness.models.tiny:TinyDreamLite",
        "dreamlite-base": "harness.models.dreamlite:DreamLiteBase",
        "dreamlite-mobile": "harness.models.dreamlite:DreamLiteMobile",
        "diffusers": "harness.models.diffusers_t2i:DiffusersText2Image",
        "sd15": "harness.models.diffusers_t2i:StableDiffusion15",
        "sdxl": "harness.models.diffusers_t2i:StableDiffusionXL",
        "sana": "harness.models.diffusers_t2i:Sana",
        "flux-dev": "harness.models.diffusers_t2i:FluxDev",
        "diffusers-edit": "harness.models.diffusers_edit:DiffusersEdit",
        "ip2p": "harness.models.diffusers_edit:InstructPix2Pix",
        "kontext": "harness.models.diffusers_edit:FluxKontext",
        "qwen-image-edit": "harness.models.diffusers_edit:QwenImageEdit",
        "gpt-image-1": "harness.models.openai_images:GPTImage1",
    },
    "benchmarks": {
        "geneval": "benchmarks.geneval.benchmark:GenEval",
        "imgedit": "benchmarks.imgedit.benchmark:ImgEdit",
    },
    "judges": {
        "openai": "benchmarks.imgedit.judge:OpenAIJudge",
    },
    "detectors": {
        "mask2former-hf": "benchmarks.geneval.detectors.hf_mask2former:HFMask2Former",
        "tiny": "benchmarks.geneval.detectors.hf_mask2former:TinyMask2Former",
        "mask2former-official": "benchmarks.geneval.detectors.official:OfficialMask2Former",
        "mmdet": "benchmarks.geneval.detectors.mmdet_backend:MMDetMask2Former",
    },
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
            self._loaded[name] = import_target(entry)
        return self._loaded[name]


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


def _discover(group: str) -> dict[str, Entry]:
    entries = {
        name: Entry(name, group, target, OWN_DISTRIBUTION, __version__, True)
        for name, target in BUILTINS[group].items()
    }
    found = sorted(
        metadata.entry_points(group=f"harness.{group}"),
        key=lambda ep: ((ep.dist.name if ep.dist else ""), ep.name),
    )
    for ep in found:
        dist = ep.dist.name if ep.dist else "<unknown distribution>"
        version = ep.dist.version if ep.dist else "?"
        if dist == OWN_DISTRIBUTION and ep.name in entries:
            continue
        if not _TARGET.match(ep.value.strip()):
            log.warning(
                "skipping plugin %r in group harness.%s from %s %s: entry point value %r is not 'module:attr'",
                ep.name, group, dist, version, ep.value,
            )
            continue
        if ep.name in entries:
            kept = entries[ep.name]
            log.warning(
                "plugin name clash in harness.%s: %r from %s %s is ignored; %s %r from %s %s is used",
                group, ep.name, dist, version, "built-in" if kept.builtin else "plugin",
                ep.name, kept.distribution, kept.version,
            )
            continue
        entries[ep.name] = Entry(ep.name, group, ep.value.strip(), dist, version, False)
    return entries


@cache
def registry(group: str) -> Registry:
    """The registry of one group (``models``, ``benchmarks``, ``judges``, ``detectors``), discovered once."""
    if group not in GROUPS:
        raise UnknownNameError(unknown_name_message("groups", group, list(GROUPS)))
    return Registry(group, _discover(group))


def refresh() -> None:
    """Forget discovered entry points (after installing a plugin in-process, e.g. in tests)."""
    registry.cache_clear()
