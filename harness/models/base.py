"""The small protocol every model adapter follows, and the ``--model-args`` parser.

An adapter is a class registered under ``harness.models``. It is built from keyword options (parsed
from ``--model-args key=value,...``), loads its weights lazily on first use, and offers one or both
capabilities:

* ``generate(prompts, seeds, **sampler) -> list[PIL.Image]``  (one image per (prompt, seed) pair)
* ``edit(images, instructions, seeds, **sampler) -> list[PIL.Image]``

Every adapter reports a :meth:`ImageModel.fingerprint`: the plain-data settings that determine its
images (weights source, dtype, steps, guidance, resolution, ...). Its hash is part of every work unit.
Seeds are turned into CPU ``torch.Generator`` objects so that images are reproducible across devices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from harness.core.options import (
    NON_NEGATIVE_INT,
    NON_NEGATIVE_NUMBER,
    POSITIVE_INT,
    SIZE,
    Check,
    check_options,
)
from harness.errors import HarnessError
from harness.units import content_hash

if TYPE_CHECKING:
    from PIL import Image


def parse_model_args(text: str | None, flag: str = "--model-args") -> dict[str, Any]:
    """Parse ``"dtype=float16,steps=4,weights=/path"`` into typed values (int, float, bool, None, str)."""
    out: dict[str, Any] = {}
    if not text:
        return out
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise HarnessError(f"{flag}: {part!r} is not key=value (example: steps=4,dtype=float16)")
        out[key] = _coerce(value.strip())
    return out


def _coerce(value: str) -> Any:
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


class ImageModel:
    """Base class of model adapters: option validation, fingerprint, seeds, lazy loading.

    Subclasses set ``name``, ``capabilities`` and ``defaults`` (every accepted option with its default
    value; ``option_types`` says what an option accepts where the default's type does not) and implement
    :meth:`load`, :meth:`generate` and/or :meth:`edit`.
    """

    name: ClassVar[str] = "base"
    capabilities: ClassVar[frozenset[str]] = frozenset()
    defaults: ClassVar[Mapping[str, Any]] = {}

    #: what an option accepts, where its default's type does not say it all (see harness.core.options)
    option_types: ClassVar[Mapping[str, Check]] = {
        "steps": POSITIVE_INT, "resolution": SIZE, "guidance": NON_NEGATIVE_NUMBER,
        "image_guidance": NON_NEGATIVE_NUMBER, "true_cfg": NON_NEGATIVE_NUMBER, "max_sequence_length": POSITIVE_INT,
        "input_size": POSITIVE_INT, "multiple": POSITIVE_INT, "seed": NON_NEGATIVE_INT,
    }

    def __init__(self, **options: Any):
        self.options: dict[str, Any] = self.check_options(options)
        self._loaded = False

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """Every option with its value (given or default), or one error naming the bad key and value."""
        return check_options(options, cls.defaults, flag="--model-args", owner=f"model {cls.name!r}",
                             checks=cls.option_types)

    # -- to implement ---------------------------------------------------------------------------------
    def load(self) -> None:
        """Load weights (called once, lazily, before the first generate/edit)."""

    def generate(self, prompts: Sequence[str], seeds: Sequence[int], **sampler: Any) -> list[Image.Image]:
        raise HarnessError(f"model {self.name!r} cannot generate images from text (capabilities: "
                           f"{', '.join(sorted(self.capabilities)) or 'none'})")

    def edit(self, images: Sequence[Image.Image], instructions: Sequence[str], seeds: Sequence[int],
             **sampler: Any) -> list[Image.Image]:
        raise HarnessError(f"model {self.name!r} cannot edit images (capabilities: "
                           f"{', '.join(sorted(self.capabilities)) or 'none'})")

    # -- shared ---------------------------------------------------------------------------------------
    def ensure_loaded(self) -> None:
        """Call :meth:`load` once."""
        if not self._loaded:
            self.load()
            self._loaded = True

    def fingerprint(self) -> dict[str, Any]:
        """Plain-data description of everything that determines the images (no device, no paths of caches)."""
        fp = {"adapter": self.name, "class": f"{type(self).__module__}.{type(self).__qualname__}"}
        fp.update({k: v for k, v in sorted(self.options.items()) if k not in self.unhashed_options})
        return fp

    #: options that do not change the images (where the model runs), left out of the hash
    unhashed_options: ClassVar[frozenset[str]] = frozenset({"device"})

    def model_hash(self) -> str:
        """Short hash of :meth:`fingerprint`; part of every work-unit key."""
        return content_hash(self.fingerprint(), 12)


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
