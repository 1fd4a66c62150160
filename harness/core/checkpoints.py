"""Torch checkpoint files read safely: tensors (and numpy scalars) only, no code from the pickle, one-line errors.

Shared by every reader of weight files the user points at (detectors, CLIP checkpoints); each passes the advice
its own command line gives (which flag names the file, where a good copy comes from).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError


class CheckpointError(HarnessError):
    """A checkpoint file that cannot be read, or is not what its reader expects."""


_NUMPY_SAFE = ("numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.dtype",
               "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.ndarray")


def _numpy_safe_globals() -> list[Any]:
    import importlib

    found = []
    for dotted in _NUMPY_SAFE:
        module, _, attr = dotted.rpartition(".")
        with contextlib.suppress(ImportError, AttributeError):
            found.append(getattr(importlib.import_module(module), attr))
    with contextlib.suppress(ImportError):
        import numpy as np

        found += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    return found


def _examples(keys: list[str], n: int = 3) -> str:
    """The first ``n`` of a list, and how many more."""
    shown = ", ".join(keys[:n])
    return shown + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def read_checkpoint(path: str | os.PathLike, trust_pickle: bool = False, *, fix: str | None = None,
                    missing: str = "", untrusted: str = "if you trust it, pass trust_pickle=true",
                    corrupt: str = "download it again") -> tuple[dict[str, Any], dict[str, Any]]:
    """``(state_dict, meta)`` of a torch (or mmdet) checkpoint file, CPU tensors.

    Loaded with ``weights_only=True`` (plus numpy scalars/dtypes/arrays, which mmdet's ``meta`` holds), so
    opening a file runs no code from it; ``trust_pickle=True`` lifts that for a file you trust. The advice
    in the one-line errors: ``missing`` follows "no such checkpoint file", ``untrusted`` a file that needs
    code, ``corrupt`` a truncated or corrupt file; ``fix`` replaces both of the last two.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file{missing}")
    try:
        if trust_pickle:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        else:
            with torch.serialization.safe_globals(_numpy_safe_globals()):
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = [ln.strip() for ln in str(exc).split("WeightsUnpickler error:")[-1].splitlines() if ln.strip()]
        reason = (detail or [type(exc).__name__])[0].split(". ")[0][:160]
        if "global" in reason.lower():
            raise CheckpointError(f"{path}: the file needs code beyond tensors to unpickle ({reason}); "
                                  + (fix or untrusted)) from None
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({reason}); {fix or corrupt}") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0].split(". ")[0][:160]
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({reason}); {fix or corrupt}") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a checkpoint dictionary (got {type(ckpt).__name__})")
    state = ckpt.get("state_dict", ckpt)
    meta = ckpt.get("meta", {}) if isinstance(ckpt.get("meta"), dict) else {}
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: no state_dict in the checkpoint")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: state_dict entries that are not tensors: {_examples(sorted(bad))}")
    return state, meta
