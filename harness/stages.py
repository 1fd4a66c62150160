"""Shared pieces of every benchmark's stages: outcomes, run manifests, record-file tokens, progress.

Benchmarks (GenEval, ImgEdit, plugins) plan work units, run them through :func:`harness.runner.run_stage`
and report an :class:`Outcome`; these helpers keep that contract identical across them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import __version__
from harness.distributed import Shard
from harness.errors import HarnessError
from harness.units import atomic_write_text

Progress = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]
SINGLE = Shard()


@contextmanager
def no_progress(desc: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress factory that shows nothing (library use and tests)."""
    yield lambda n: None


@dataclass
class Outcome:
    """What a run, score or merge produced: where, its run id, and the summary (empty for a shard)."""

    out: Path
    run_id: str
    summary: dict[str, Any]
    generated: int = 0
    partial: bool = False
    repaired: list[str] = field(default_factory=list)


class IncompleteRun(HarnessError):
    """Units of a run are not recorded yet; ``names`` lists each of them."""

    def __init__(self, message: str, names: list[str]):
        super().__init__(message)
        self.names = names


def open_manifest(out: Path, run_id: str, config: dict[str, Any], provenance: dict[str, Any]) -> None:
    """Create ``run.json`` or check that the folder holds this same run (then it resumes)."""
    path = out / "run.json"
    if path.is_file():
        manifest = json.loads(path.read_text())
        if manifest.get("run_id") != run_id:
            old = manifest.get("config", {})
            changed = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            raise HarnessError(
                f"{out}: holds run {manifest.get('run_id')} made with other settings (differs in: "
                f"{', '.join(changed)}); rerun with the same settings to resume, or pass another --out"
            )
        return
    manifest = {"run_id": run_id, "config": config, "provenance": provenance, "created": time.time(),
                "environment": environment()}
    atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def environment() -> dict[str, Any]:
    """Python, platform and the versions of the packages that change numbers."""
    import platform
    from importlib import metadata

    versions = {}
    for dist in ("torch", "diffusers", "transformers", "open_clip_torch", "accelerate", "numpy", "pillow"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": versions,
            "harness": __version__}


def shard_token(shard: Shard) -> str | None:
    """Record-file token: the shard index first, so each rank's file is recognisable."""
    import uuid

    return f"r{shard.index}of{shard.count}-{os.getpid()}-{uuid.uuid4().hex[:6]}" if shard.count > 1 else None


def listing(names: list[str], most: int = 10) -> str:
    """The first ``most`` names, then how many more: for error messages that name missing units."""
    shown = ", ".join(names[:most])
    return shown + (f", ... and {len(names) - most} more" if len(names) > most else "")
