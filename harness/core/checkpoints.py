"""Reading torch checkpoint files safely: tensors and plain data only, never code from the pickle.

``torch.load`` unpickles, and a pickle can run any code. :func:`read_checkpoint` opens a file with
``weights_only=True`` plus the few numpy types that mmdet checkpoints keep in their ``meta`` (scalars, dtypes,
arrays), so opening a checkpoint runs nothing from it; a file that needs more is refused with one line, unless
the caller trusts it. torch is imported inside the functions only.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError

#: numpy globals an mmdet/torch checkpoint's metadata may hold (module paths of numpy 1.x and 2.x)
_NUMPY_SAFE = ("numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.dtype",
               "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.ndarray")


class CheckpointError(HarnessError):
    """A checkpoint file that cannot be read safely, or that is not the model its reader expects."""


def key_examples(keys: list[str], n: int = 3) -> str:
    """The first ``n`` keys and how many more: ``a, b, c (+4 more)``."""
    shown = ", ".join(keys[:n])
    return shown + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


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


def _first_reason(text: str) -> str:
    return (text.splitlines() or [""])[0].split(". ")[0][:160]


def read_checkpoint(path: str | os.PathLike, trust_pickle: bool = False, *, fix: str | None = None,
                    flag: str = "--detector-args", source: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(state_dict, meta)`` of a torch checkpoint file (a bare state dict, or mmdet's ``{"state_dict", "meta"}``),
    CPU tensors.

    Loaded with ``weights_only=True`` plus numpy scalars/dtypes/arrays, so opening a file runs no code from it;
    ``trust_pickle=True`` lifts that for a file you trust. ``fix`` is the advice given for a file that needs code
    or is corrupt; by default the advice names ``flag`` (the option that gives ``weights=`` and
    ``trust_pickle=``) and ``source`` (where to download the file again).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file ({flag} weights=PATH)")
    corrupt_fix = fix or (f"download it again ({source})" if source else "download or save it again")
    try:
        if trust_pickle:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        else:
            with torch.serialization.safe_globals(_numpy_safe_globals()):
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = "\n".join(ln.strip() for ln in str(exc).split("WeightsUnpickler error:")[-1].splitlines()
                           if ln.strip())
        reason = _first_reason(detail) or type(exc).__name__
        if "global" in reason.lower():
            raise CheckpointError(f"{path}: the file needs code beyond tensors to unpickle ({reason}); "
                                  + (fix or f"if you trust it, pass {flag} trust_pickle=true")) from None
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({reason}); {corrupt_fix}") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        reason = _first_reason(str(exc)) or type(exc).__name__
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({reason}); {corrupt_fix}") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a checkpoint dictionary (got {type(ckpt).__name__})")
    state = ckpt.get("state_dict", ckpt)
    meta = ckpt.get("meta", {}) if isinstance(ckpt.get("meta"), dict) else {}
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: no state_dict in the checkpoint")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: state_dict entries that are not tensors: {key_examples(sorted(bad))}")
    return state, meta
