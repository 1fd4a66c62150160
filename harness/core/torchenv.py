"""The torch environment: devices, dtypes, reproducible generators (torch imported inside the functions only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.core.errors import HarnessError


def cpu_generators(seeds: Sequence[int]) -> list[Any]:
    """One CPU ``torch.Generator`` per seed (diffusers' recommendation for reproducibility)."""
    import torch

    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def resolve_device(device: str | None) -> str:
    """``auto`` → this process's GPU (``cuda:LOCAL_RANK`` under a launcher) if any, else ``mps``, else ``cpu``."""
    import os

    import torch

    if device in (None, "auto"):
        if torch.cuda.is_available():
            return f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    return str(device)


def resolve_dtype(dtype: str | None, device: str) -> Any:
    """``auto`` → bfloat16 on CUDA, float32 elsewhere; otherwise the named torch dtype."""
    import torch

    if dtype in (None, "auto"):
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype not in names:
        raise HarnessError(f"--model-args dtype={dtype!r}: use one of auto, {', '.join(names)}")
    return names[dtype]


def parse_resolution(value: Any) -> tuple[int, int]:
    """``1024`` or ``"768x1024"`` (width x height) → (width, height)."""
    if isinstance(value, int):
        return value, value
    text = str(value).lower()
    try:
        if "x" in text:
            w, h = text.split("x")
            return int(w), int(h)
        return int(text), int(text)
    except ValueError:
        raise HarnessError(f"--model-args resolution={value!r}: use a number (1024) or WIDTHxHEIGHT") from None


def quiet_hub_progress() -> None:
    """Turn off the per-file "Loading weights" bars of diffusers/transformers (the CLI shows its own)."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def pipeline_runtime(options: dict) -> tuple[str, Any, str, str | None]:
    """``(device, dtype, weights, revision)`` of a diffusers model adapter's options, hub progress bars off."""
    from harness.core.hub import pipeline_source

    quiet_hub_progress()
    device = resolve_device(options["device"])
    weights, revision = pipeline_source(str(options["weights"]), options.get("revision"))
    return device, resolve_dtype(options["dtype"], device), weights, revision
