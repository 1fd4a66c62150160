"""The model contract: what every image model adapter (a ``harness.models`` entry point) provides.

An adapter is built from keyword options (parsed from ``--model-args key=value,...``), loads its weights
lazily on first use, and offers one or both capabilities:

* ``generate(prompts, seeds, **sampler) -> list[PIL.Image]``  (one image per (prompt, seed) pair)
* ``edit(images, instructions, seeds, **sampler) -> list[PIL.Image]``

Every adapter reports a :meth:`ImageModel.fingerprint`: the plain-data settings that determine its images
(weights source, dtype, steps, guidance, resolution, ...). Its hash is part of every work unit. Seeds are
turned into CPU ``torch.Generator`` objects so that images are reproducible across devices. An image may
carry what the model measured itself (``image.info["harness"] = {"seconds": ..., ...}``, e.g. on a phone);
the engine records it with the image. An adapter that could not make one image of a batch returns a
:class:`FailedImage` in its place: the unit is recorded ``failed`` with the reason (never silently missing;
the benchmark counts it) and the next run of the same command tries it again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from harness.core.errors import HarnessError
from harness.core.hashing import content_hash
from harness.core.options import (
    NON_NEGATIVE_INT,
    NON_NEGATIVE_NUMBER,
    POSITIVE_INT,
    SIZE,
    Check,
    Configurable,
)

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class FailedImage:
    """In place of an image a model could not make: why, and where a partial output is (if any)."""

    reason: str
    partial: str | None = None


class ImageModel(Configurable):
    """Base class of model adapters: options, fingerprint, lazy loading.

    Subclasses set ``name``, ``capabilities`` and ``defaults`` (every accepted option with its default
    value; ``option_types`` says what an option accepts where the default's type does not) and implement
    :meth:`load`, :meth:`generate` and/or :meth:`edit`.
    """

    kind: ClassVar[str] = "model"
    option_flag: ClassVar[str] = "--model-args"
    name: ClassVar[str] = "base"
    capabilities: ClassVar[frozenset[str]] = frozenset()

    #: what an option accepts, where its default's type does not say it all (see harness.core.options)
    option_types: ClassVar[Mapping[str, Check]] = {
        "steps": POSITIVE_INT, "resolution": SIZE, "guidance": NON_NEGATIVE_NUMBER,
        "image_guidance": NON_NEGATIVE_NUMBER, "true_cfg": NON_NEGATIVE_NUMBER, "max_sequence_length": POSITIVE_INT,
        "input_size": POSITIVE_INT, "multiple": POSITIVE_INT, "seed": NON_NEGATIVE_INT,
    }

    #: options that do not change the images (where the model runs), left out of the hash
    unhashed_options: ClassVar[frozenset[str]] = frozenset({"device"})
    #: options also offered as ``harness run`` flags (``{"--host": "host"}``): the same value as
    #: ``--model-args host=...``, for where a model runs rather than what it computes
    cli_flags: ClassVar[Mapping[str, str]] = {}

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._loaded = False

    # -- to implement ---------------------------------------------------------------------------------
    def resolve(self) -> None:
        """Fail now, with one line, if the weights cannot be had (a missing folder, an unreachable hub id)."""

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
        return {"adapter": self.name, "class": f"{type(self).__module__}.{type(self).__qualname__}",
                **self.option_fingerprint()}

    def model_hash(self) -> str:
        """Short hash of :meth:`fingerprint`; part of every work-unit key."""
        return content_hash(self.fingerprint(), 12)
