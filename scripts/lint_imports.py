"""Check the import contracts of ``pyproject.toml`` against the *installed* package (``tox -e lint``).

The package-dir mapping puts benchmarks/, device/ and reports/ inside ``harness`` only once installed, and
import-linter puts the working directory first on ``sys.path``; so this runs it from an empty folder, where
``import harness`` finds the installed wheel rather than the checkout.

    python scripts/lint_imports.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def main() -> int:
    config = Path(__file__).resolve().parents[1] / "pyproject.toml"
    from importlinter.cli import lint_imports

    with tempfile.TemporaryDirectory() as empty:
        os.chdir(empty)
        return lint_imports(config_filename=str(config), no_cache=True)


if __name__ == "__main__":
    sys.exit(main())
