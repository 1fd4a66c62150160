"""Instruction-editing adapter over any diffusers editing pipeline, plus presets for the ImgEdit baselines.

``DiffusersEdit`` (registered as ``diffusers-edit``) loads ``weights`` (hub id or ``save_pretrained``
folder) with ``diffusers.DiffusionPipeline`` (the class named in ``model_index.json``) or the class named by
``pipeline=``. Each edit is one pipeline call with its own CPU generator (editing pipelines take one
source size per call). Only the sampler arguments the pipeline's ``__call__`` accepts are passed, so one
adapter drives InstructPix2Pix (``image_guidance_scale``), FLUX.1 Kontext (``guidance_scale``,
``max_area``, ``_auto_resize``) and Qwen-Image-Edit (``true_cfg_scale``, ``negative_prompt``).

Sizes: ``input_size=N`` resizes the source to about N² pixels (aspect kept, sides multiples of 16) before
editing; None keeps the source size (rounded to multiples of 16). Kontext otherwise snaps every input to
one of its preferred resolutions (``_auto_resize=True``, ``max_area=1024²``); the adapter passes
``height``/``width`` = the prepared size, ``max_area=H*W`` and ``_auto_resize=False`` so the edit keeps the
source's framing and aspect. Importing this module imports neither torch nor diffusers.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Sequence
from typing import Any, ClassVar

from harness.api.model import ImageModel
from harness.core.errors import HarnessError
from harness.core.hub import check_pipeline_weights
from harness.core.torchenv import cpu_generators, pipeline_runtime, resolve_device, resolve_dtype

COMMON_DEFAULTS: dict[str, Any] = {
    "weights": None,
    "revision": None,
    "variant": None,
    "dtype": "auto",
    "device": "auto",
    "pipeline": "auto",  # "auto" (model_index.json's class) or a diffusers pipeline class name
    "steps": None,  # None = the pipeline's default
    "guidance": None,  # guidance_scale (text CFG, or FLUX's distilled guidance)
    "image_guidance": None,  # image_guidance_scale (InstructPix2Pix)
    "true_cfg": None,  # true_cfg_scale (Qwen-Image-Edit)
    "negative_prompt": None,
    "input_size": None,  # None = the source's own size; N = resize to about N*N pixels
    "multiple": 16,  # sides are rounded down to a multiple of this
    "cpu_offload": False,
}


def _one_line(exc: BaseException, limit: int = 500) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def target_size(size: tuple[int, int], input_size: int | None, multiple: int) -> tuple[int, int]:
    """(width, height) for a source of ``size``: area ≈ input_size² if given, sides multiples of ``multiple``."""
    w, h = size
    if input_size:
        scale = math.sqrt(input_size * input_size / (w * h))
        w, h = w * scale, h * scale
    return max(multiple, int(w) // multiple * multiple), max(multiple, int(h) // multiple * multiple)


class DiffusersEdit(ImageModel):
    """Any diffusers instruction-editing pipeline; ``weights`` is required."""

    name: ClassVar[str] = "diffusers-edit"
    capabilities: ClassVar[frozenset[str]] = frozenset({"edit"})
    defaults: ClassVar[dict[str, Any]] = COMMON_DEFAULTS
    unhashed_options: ClassVar[frozenset[str]] = frozenset({"device", "cpu_offload"})

    def __init__(self, **options: Any):
        super().__init__(**options)
        if not self.options["weights"]:
            raise HarnessError(f"model {self.name!r} needs weights: pass --model-args weights=HUB_ID_OR_FOLDER "
                               "(e.g. timbrooks/instruct-pix2pix, or a folder written by save_pretrained())")
        self.pipe: Any = None
        self.pipeline_class_used: str | None = None
        self._accepts: set[str] = set()

    def fingerprint(self) -> dict[str, Any]:
        fp = super().fingerprint()
        fp["weights"] = str(fp["weights"])
        fp["dtype"] = str(resolve_dtype(self.options["dtype"], resolve_device(self.options["device"])))
        for name, cast in (("steps", int), ("guidance", float), ("image_guidance", float), ("true_cfg", float),
                           ("input_size", int), ("multiple", int)):
            if fp.get(name) is not None:
                fp[name] = cast(fp[name])
        return fp

    def _pipeline_class(self) -> Any:
        import diffusers

        wanted = str(self.options["pipeline"] or "auto")
        if wanted == "auto":
            return diffusers.DiffusionPipeline
        cls = getattr(diffusers, wanted, None)
        if not (isinstance(cls, type) and issubclass(cls, diffusers.DiffusionPipeline)):
            names = [n for n in dir(diffusers) if n.endswith("Pipeline")]
            close = difflib.get_close_matches(wanted, names, n=1)
            raise HarnessError(f"--model-args pipeline={wanted!r}: diffusers {diffusers.__version__} has no such "
                               f"pipeline class{f' (did you mean {close[0]!r}?)' if close else ''}")
        return cls

    def resolve(self) -> None:
        """The weights, in seconds: a diffusers pipeline folder, or a hub id cached (offline) or served."""
        check_pipeline_weights(self.options)

    def load(self) -> None:
        device, dtype, weights, revision = pipeline_runtime(self.options)
        if self.options["cpu_offload"] and device == "cpu":
            raise HarnessError("--model-args cpu_offload=true needs an accelerator (device is cpu)")
        try:
            pipe = self._pipeline_class().from_pretrained(weights, revision=revision, variant=self.options["variant"],
                                                          dtype=dtype)
        except (OSError, ValueError, TypeError) as exc:
            raise HarnessError(f"could not load a diffusers pipeline from {weights!r}: {_one_line(exc)}. Gated hub "
                               "weights: request access, then `hf auth login`; offline: pass weights=LOCAL_FOLDER."
                               ) from exc
        accepts = set(inspect.signature(type(pipe).__call__).parameters)
        if "image" not in accepts:
            raise HarnessError(f"{weights!r} loads {type(pipe).__name__}, which takes no source image; "
                               "use an editing pipeline (InstructPix2Pix, FluxKontext, QwenImageEdit, ...)")
        if self.options["cpu_offload"]:
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        self.pipe, self._accepts = pipe, accepts
        self.pipeline_class_used = type(pipe).__name__

    def call_kwargs(self, size: tuple[int, int], sampler: dict[str, Any]) -> dict[str, Any]:
        """The pipeline arguments for one edit at prepared ``size`` (only those ``__call__`` accepts)."""
        opts = {**self.options, **sampler}
        wanted: dict[str, Any] = {"output_type": "pil"}
        if opts["steps"] is not None:
            wanted["num_inference_steps"] = int(opts["steps"])
        if opts["guidance"] is not None:
            wanted["guidance_scale"] = float(opts["guidance"])
        if opts["image_guidance"] is not None:
            wanted["image_guidance_scale"] = float(opts["image_guidance"])
        if opts["true_cfg"] is not None:
            wanted["true_cfg_scale"] = float(opts["true_cfg"])
        if opts["negative_prompt"] is not None:
            wanted["negative_prompt"] = str(opts["negative_prompt"])
        w, h = size
        wanted.update({"width": w, "height": h, "max_area": w * h, "_auto_resize": False})
        ignored = {k for k in ("image_guidance_scale", "true_cfg_scale") if k in wanted and k not in self._accepts}
        if ignored:
            raise HarnessError(f"model {self.name!r}: {self.pipeline_class_used} does not take "
                               f"{', '.join(sorted(ignored))}; drop that --model-args option")
        return {k: v for k, v in wanted.items() if k in self._accepts}

    def edit(self, images: Sequence[Any], instructions: Sequence[str], seeds: Sequence[int],
             **sampler: Any) -> list[Any]:
        """One pipeline call per (image, instruction, seed); output at the prepared size."""
        if not len(images) == len(instructions) == len(seeds):
            raise ValueError("edit: one image and one seed per instruction")
        self.ensure_loaded()
        out = []
        for image, instruction, seed in zip(images, instructions, seeds, strict=True):
            size = target_size(image.size, self.options["input_size"], int(self.options["multiple"]))
            source = image.convert("RGB")
            if source.size != size:
                source = source.resize(size)
            kwargs = self.call_kwargs(size, sampler)
            result = self.pipe(prompt=instruction, image=source, generator=cpu_generators([seed])[0], **kwargs)
            out.append(result.images[0])
        return out


class InstructPix2Pix(DiffusersEdit):
    """``ip2p``: InstructPix2Pix (timbrooks/instruct-pix2pix) with the pipeline's defaults (100 steps, CFG 7.5,
    image CFG 1.5), the source resized to about 512² (its training resolution; sides multiples of 8)."""

    name: ClassVar[str] = "ip2p"
    defaults: ClassVar[dict[str, Any]] = {**COMMON_DEFAULTS, "weights": "timbrooks/instruct-pix2pix",
                                          "pipeline": "StableDiffusionInstructPix2PixPipeline", "steps": 100,
                                          "guidance": 7.5, "image_guidance": 1.5, "input_size": 512, "multiple": 8}


class FluxKontext(DiffusersEdit):
    """``kontext``: FLUX.1 Kontext [dev] (gated), model-card settings: 28 steps, guidance 2.5, ~1024² area,
    with ``max_area=H*W`` and ``_auto_resize=False`` so the output keeps the source's aspect."""

    name: ClassVar[str] = "kontext"
    defaults: ClassVar[dict[str, Any]] = {**COMMON_DEFAULTS, "weights": "black-forest-labs/FLUX.1-Kontext-dev",
                                          "pipeline": "FluxKontextPipeline", "steps": 28, "guidance": 2.5,
                                          "input_size": 1024}


class QwenImageEdit(DiffusersEdit):
    """``qwen-image-edit``: Qwen-Image-Edit with its model-card settings: 50 steps, true CFG 4.0, negative
    prompt " " (the pipeline sizes the image itself, about 1024² keeping the aspect)."""

    name: ClassVar[str] = "qwen-image-edit"
    defaults: ClassVar[dict[str, Any]] = {**COMMON_DEFAULTS, "weights": "Qwen/Qwen-Image-Edit",
                                          "pipeline": "QwenImageEditPipeline", "steps": 50, "true_cfg": 4.0,
                                          "negative_prompt": " ", "input_size": 1024}
