"""Build and install mmcv 2.1.0 with its compiled CPU ops into the current environment (for the `mmdet` extra).

mmcv has no wheel for current torch, and its 2.1.0 source hard-codes ``-std=c++17`` while torch 2.14's headers need
C++20. This script downloads the sdist with pip, replaces the flag, builds a wheel against the installed torch
(``MMCV_WITH_OPS=1 MAX_JOBS=2 FORCE_CUDA=0 CFLAGS=-g0``, no build isolation, no pip cache: a cached wheel built
for another torch would install silently and crash at import) and installs it. The wheel is kept in
``$MMCV_WHEEL_DIR/torch-<version>/`` (default ``~/.cache/dreamlite-harness/mmcv-wheels``), so a second
environment with the same torch installs in seconds. About 8 minutes on 2 cores the first time.

    python scripts/install_mmcv.py            # idempotent: does nothing if mmcv 2.1.0 ops already import
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "2.1.0"


def ops_import() -> str | None:
    """The error importing mmcv's compiled ops, or None when mmcv VERSION with ops works here."""
    code = ("import mmcv, sys; from mmcv.ops import MultiScaleDeformableAttention; "
            f"sys.exit(0 if mmcv.__version__ == '{VERSION}' else 3)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]


def pip(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], check=True, env=env)


def main() -> int:
    if ops_import() is None:
        print(f"mmcv {VERSION} with compiled ops is already installed")
        return 0
    import torch

    root = Path(os.environ.get("MMCV_WHEEL_DIR", Path.home() / ".cache" / "dreamlite-harness" / "mmcv-wheels"))
    wheels = root / f"torch-{torch.__version__}"
    found = sorted(wheels.glob(f"mmcv-{VERSION}-*.whl"))
    if not found:
        pip("install", "-q", "setuptools<81", "wheel", "ninja", "psutil")
        with tempfile.TemporaryDirectory() as tmp:
            pip("download", "-q", "--no-deps", "--no-build-isolation", "--no-binary", ":all:", f"mmcv=={VERSION}",
                "-d", tmp)  # no isolation: its setup.py needs pkg_resources (setuptools<81)
            (sdist,) = Path(tmp).glob(f"mmcv-{VERSION}.tar.gz")
            with tarfile.open(sdist) as tar:
                tar.extractall(tmp, filter="data")
            src = Path(tmp) / f"mmcv-{VERSION}"
            setup = src / "setup.py"
            text = setup.read_text()
            if "-std=c++17" not in text:
                print(f"{setup}: no -std=c++17 to replace; refusing to guess", file=sys.stderr)
                return 1
            setup.write_text(text.replace("-std=c++17", "-std=c++20"))
            env = {**os.environ, "MMCV_WITH_OPS": "1", "MAX_JOBS": "2", "FORCE_CUDA": "0", "CFLAGS": "-g0"}
            print(f"building mmcv {VERSION} against torch {torch.__version__} (several minutes) ...", flush=True)
            wheels.mkdir(parents=True, exist_ok=True)
            pip("wheel", "-q", "--no-build-isolation", "--no-cache-dir", "--no-deps", str(src), "-w", str(wheels),
                env=env)
        found = sorted(wheels.glob(f"mmcv-{VERSION}-*.whl"))
    pip("install", "-q", "--no-cache-dir", "--no-deps", "--force-reinstall", str(found[-1]))
    pip("install", "-q", "--no-cache-dir", str(found[-1]))  # its light dependencies (addict, yapf, ...)
    error = ops_import()
    if error is not None:
        print(f"mmcv {VERSION} installed from {found[-1]} but its ops do not import: {error}", file=sys.stderr)
        return 1
    print(f"mmcv {VERSION} with compiled ops installed ({found[-1].name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
