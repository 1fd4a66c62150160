"""GenEval's official detector without mmcv: the mmdet 2.x Mask2Former checkpoint, run by transformers
(docs/geneval.md, 'Official checkpoint loader').

* :mod:`.convert`: the mmdet 2.x → transformers key map, the strict loader, and the one-off converter to
  safetensors (``python -m harness.benchmarks.geneval.detectors.official.convert CKPT OUT``);
* :mod:`.forward`: the Swin backbone in mmdet's operation order, deformable attention in mmcv's;
* :mod:`.selftest`: the deformable-attention self-test against a float64 reference;
* :mod:`.detector`: the ``mask2former-official`` detector (:class:`OfficialMask2Former`), where its checkpoint
  comes from, and its results label.

The names below are imported from their module on first use: importing this package imports nothing heavy
(no torch), and ``python -m ...official.convert`` runs that module fresh.
"""

from __future__ import annotations

import importlib
from typing import Any

#: module → the names this package re-exports from it
_EXPORTS = {
    "convert": ("HF_ONLY_KEYS", "LOADER_VERSION", "OFFICIAL_NAME", "OFFICIAL_SHA256_PREFIX", "OFFICIAL_URL", "SWIN_S",
                "Arch", "build_model", "checkpoint_layout", "convert_tensor", "hf_to_mmdet2", "index_buffers",
                "infer_arch", "key_rules", "layout_error", "load_hf_state", "load_mmdet2_state",
                "mask2former_config", "mmdet2_arch", "mmdet2_to_hf", "mmdet2_to_mmdet3", "mmdet3_to_mmdet2",
                "read_converted", "relative_position_index", "unconvert_tensor", "write_converted"),
    "detector": ("OFFICIAL_FILE", "OFFICIAL_LABEL", "UNVERIFIED_LABEL", "OfficialMask2Former",
                 "check_checkpoint_available", "hex_digest_option", "resolve_checkpoint", "results_label",
                 "reuse_freed_memory"),
    "forward": ("msda_fast", "strict_fp32", "use_mmdet_arithmetic"),
    "selftest": ("check_deformable_attention", "deformable_attention_selftest", "msda_reference"),
}
#: shared with other readers of checkpoints (harness.core.checkpoints)
_CORE = ("CheckpointError", "read_checkpoint")
_WHERE = {name: f"{__name__}.{module}" for module, names in _EXPORTS.items() for name in names}
_WHERE.update({name: "harness.core.checkpoints" for name in _CORE})
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
