"""dreamlite-harness: evaluate and benchmark small on-device image models.

The Python API (the CLI, the nightly job and the tests call it too)::

    from harness import evaluate
    outcome = evaluate("geneval", "tiny", {"prompts": "demo", "detector": "tiny", "clip": "tiny"}, out="runs/demo")
    print(outcome.summary["overall"])

Importing this package is cheap: no torch, diffusers or transformers are imported until a model,
detector or scorer is actually loaded.
"""

from __future__ import annotations

import os as _os
from typing import Any

from harness.core.version import __version__

__all__ = ["__version__", "evaluate", "merge", "score"]

# Installed, the repository's benchmarks/, device/ and reports/ folders are harness.benchmarks, harness.device
# and harness.reports (pyproject.toml's package-dir). In a source checkout they sit beside this package.
_checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_checkout, "pyproject.toml")) and _os.path.isdir(_os.path.join(_checkout, "device")):
    __path__.append(_checkout)


def __getattr__(name: str) -> Any:
    if name in ("evaluate", "score", "merge"):
        from harness.engine import lifecycle

        return getattr(lifecycle, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
