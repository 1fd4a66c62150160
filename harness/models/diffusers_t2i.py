"""Generic text-to-image adapter over any diffusers pipeline, plus presets for common reference models.

``DiffusersText2Image`` (registered as ``diffusers``) loads ``weights`` (a hub id or a local folder written
by ``save_pretrained``) with ``diffusers.AutoPipelineForText2Image`` and falls back to
``diffusers.DiffusionPipeline`` when the auto class has no text-to-image mapping for the model;
``pipeline=ClassName`` names an explicit diffusers pipeline class instead. Each ``generate`` call runs the
pipeline once for the whole batch, with one CPU ``torch.Generator`` per image, so an image depends only on its
own prompt and seed.

Presets (``sd15``, ``sdxl``, ``sana``, ``flux-dev``) are subclasses that only change the default weights and
sampler settings; the settings are part of :meth:`~harness.api.model.ImageModel.fingerprint`, so two presets
never share a model hash.

Importing this module does not import torch or diffusers; :meth:`DiffusersText2Image.load` does.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from harness.api.model import ImageModel
from harness.core.errors import HarnessError
from harness.core.hub import check_pipeline_weights
from harness.core.torchenv import (
    cpu_generators,
    parse_resolution,
    pipeline_runtime,
    resolve_device,
    resolve_dtype,
)

if TYPE_CHECKING:
    from PIL import Image

COMMON_DEFAULTS: dict[str, Any] = {
    "weights": None,  # hub id or local folder (required)
    "revision": None,
    "variant": None,  # e.g. "fp16": which weight files to read
    "dtype": "auto",
    "device": "auto",
    "steps": None,  # None = the pipeline's default (not passed); the presets set it
    "guidance": None,  # None = the pipeline's default (not passed); the presets set it
    "resolution": None,  # None = the pipeline's default; else 1024 or "WIDTHxHEIGHT"
    "negative_prompt": None,
    "max_sequence_length": None,  # None = not passed to the pipeline
    "pipeline": "auto",  # "auto" or a diffusers pipeline class name, e.g. "StableDiffusionXLPipeline"
    "cpu_offload": False,
}

#: options that may be overridden per ``generate`` call
SAMPLER_OPTIONS: frozenset[str] = frozenset(
    {"steps", "guidance", "resolution", "negative_prompt", "max_sequence_length"}
)


def _one_line(exc: BaseException, limit: int = 600) -> str:
    """An exception message squeezed onto one line (diffusers/hub messages span several)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class DiffusersText2Image(ImageModel):
    """Any diffusers text-to-image pipeline; the ``weights`` option is required."""

    name: ClassVar[str] = "diffusers"
    capabilities: ClassVar[frozenset[str]] = frozenset({"generate"})
    defaults: ClassVar[dict[str, Any]] = COMMON_DEFAULTS
    unhashed_options: ClassVar[frozenset[str]] = frozenset({"device", "cpu_offload"})

    def __init__(self, **options: Any):
        super().__init__(**options)
        if not self.options["weights"]:
            raise HarnessError(
                f"model {self.name!r} needs weights: pass --model-args weights=HUB_ID_OR_FOLDER "
                "(a hub id such as stable-diffusion-v1-5/stable-diffusion-v1-5, or a folder written by "
                "save_pretrained())"
            )
        self.pipe: Any = None
        #: the diffusers class that was actually loaded (set by :meth:`load`; not part of the hash)
        self.pipeline_class_used: str | None = None

    # -- fingerprint ----------------------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        """Options that determine the images, with dtype resolved and numbers normalized.

        ``steps=50`` and ``steps=50.0``, ``guidance=9`` and ``guidance=9.0``, ``resolution=512`` and
        ``"512x512"`` hash the same. Independent of whether the pipeline is loaded yet.
        """
        fp = super().fingerprint()
        fp["weights"] = str(fp["weights"])
        fp["dtype"] = str(resolve_dtype(self.options["dtype"], resolve_device(self.options["device"])))
        if fp.get("steps") is not None:
            fp["steps"] = int(fp["steps"])
        if fp.get("guidance") is not None:
            fp["guidance"] = float(fp["guidance"])
        if fp.get("max_sequence_length") is not None:
            fp["max_sequence_length"] = int(fp["max_sequence_length"])
        if fp.get("resolution") is not None:
            width, height = parse_resolution(fp["resolution"])
            fp["resolution"] = f"{width}x{height}"
        return fp

    # -- loading --------------------------------------------------------------------------------------
    def _pipeline_class(self) -> Any:
        import diffusers

        wanted = str(self.options["pipeline"] or "auto")
        if wanted == "auto":
            return diffusers.AutoPipelineForText2Image
        cls = getattr(diffusers, wanted, None)
        is_pipeline = isinstance(cls, type) and (
            issubclass(cls, diffusers.DiffusionPipeline) or cls.__name__.startswith("AutoPipelineFor")
        )
        if not is_pipeline:
            names = [n for n in dir(diffusers) if n.endswith("Pipeline")]
            close = difflib.get_close_matches(wanted, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise HarnessError(
                f"--model-args pipeline={wanted!r}: diffusers {diffusers.__version__} has no such pipeline "
                f"class{hint}; use pipeline=auto or a class name such as StableDiffusionXLPipeline"
            )
        return cls

    def resolve(self) -> None:
        """The weights, in seconds: a diffusers pipeline folder, or a hub id cached (offline) or served."""
        check_pipeline_weights(self.options)

    def load(self) -> None:
        import diffusers

        device, dtype, weights, revision = pipeline_runtime(self.options)
        if self.options["cpu_offload"] and device == "cpu":
            raise HarnessError(
                "--model-args cpu_offload=true needs an accelerator (device is cpu); drop cpu_offload or set "
                "device=cuda"
            )
        cls = self._pipeline_class()
        # `dtype` (diffusers >= 0.42; `torch_dtype` is deprecated there and warns)
        load_kwargs = {"revision": revision, "variant": self.options["variant"], "dtype": dtype}
        try:
            try:
                pipe = cls.from_pretrained(weights, **load_kwargs)
            except ValueError as exc:
                # AutoPipelineForText2Image only knows the families in its text-to-image mapping; it raises
                # "AutoPipeline can't find a pipeline linked to <Class>" (after reading model_index.json only,
                # so retrying is cheap). Any other pipeline class still loads through DiffusionPipeline.
                if cls is not diffusers.AutoPipelineForText2Image or "AutoPipeline" not in str(exc):
                    raise
                pipe = diffusers.DiffusionPipeline.from_pretrained(weights, **load_kwargs)
        except (OSError, ValueError, TypeError) as exc:
            raise HarnessError(
                f"could not load a diffusers pipeline from {weights!r} (revision={revision!r}, "
                f"variant={self.options['variant']!r}): {_one_line(exc)}. Gated hub weights: request access "
                "on the model page, then `hf auth login` (or set HF_TOKEN); offline (HF_HUB_OFFLINE=1) or "
                "without network: pass weights=LOCAL_FOLDER written by save_pretrained()."
            ) from exc
        if self.options["cpu_offload"]:
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self.pipeline_class_used = type(pipe).__name__

    # -- generation -----------------------------------------------------------------------------------
    def _call_kwargs(self, sampler: dict[str, Any], batch: int) -> dict[str, Any]:
        unknown = sorted(set(sampler) - SAMPLER_OPTIONS)
        if unknown:
            raise HarnessError(
                f"model {self.name!r}: sampler option(s) {', '.join(map(repr, unknown))} cannot change "
                f"per call; per-call options: {', '.join(sorted(SAMPLER_OPTIONS))}"
            )
        opts = {**self.options, **sampler}
        kwargs: dict[str, Any] = {"output_type": "pil"}
        if opts["steps"] is not None:
            kwargs["num_inference_steps"] = int(opts["steps"])
        if opts["guidance"] is not None:
            kwargs["guidance_scale"] = float(opts["guidance"])
        if opts["resolution"] is not None:
            kwargs["width"], kwargs["height"] = parse_resolution(opts["resolution"])
        if opts["negative_prompt"] is not None:
            kwargs["negative_prompt"] = [str(opts["negative_prompt"])] * batch
        if opts["max_sequence_length"] is not None:
            kwargs["max_sequence_length"] = int(opts["max_sequence_length"])
        return kwargs

    def generate(self, prompts: Sequence[str], seeds: Sequence[int], **sampler: Any) -> list[Image.Image]:
        """One pipeline call for the whole batch, one CPU generator per (prompt, seed) pair."""
        if len(prompts) != len(seeds):
            raise ValueError(f"generate: one seed per prompt ({len(prompts)} prompts, {len(seeds)} seeds)")
        if not prompts:
            return []
        kwargs = self._call_kwargs(sampler, len(prompts))
        self.ensure_loaded()
        out = self.pipe(prompt=list(prompts), generator=cpu_generators(seeds), **kwargs)
        return list(out.images)


class StableDiffusion15(DiffusersText2Image):
    """``sd15``: Stable Diffusion 1.5 with the GenEval reference script's settings (``generation/
    diffusers_generate.py``: 50 steps, CFG 9.0, no negative prompt; 512² is SD1.5's default resolution)."""

    name: ClassVar[str] = "sd15"
    defaults: ClassVar[dict[str, Any]] = {
        **COMMON_DEFAULTS,
        "weights": "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "steps": 50,
        "guidance": 9.0,
        "resolution": 512,
    }


class StableDiffusionXL(DiffusersText2Image):
    """``sdxl``: SDXL base 1.0 with the GenEval reference script's settings (50 steps, CFG 9.0; 1024² is
    SDXL's default resolution)."""

    name: ClassVar[str] = "sdxl"
    defaults: ClassVar[dict[str, Any]] = {
        **COMMON_DEFAULTS,
        "weights": "stabilityai/stable-diffusion-xl-base-1.0",
        "steps": 50,
        "guidance": 9.0,
        "resolution": 1024,
    }


class Sana(DiffusersText2Image):
    """``sana``: Sana 1.6B 1024px with the settings of its diffusers model card / ``SanaPipeline`` example
    (20 steps, CFG 4.5, 1024²)."""

    name: ClassVar[str] = "sana"
    defaults: ClassVar[dict[str, Any]] = {
        **COMMON_DEFAULTS,
        "weights": "Efficient-Large-Model/Sana_1600M_1024px_diffusers",
        "steps": 20,
        "guidance": 4.5,
        "resolution": 1024,
    }


class FluxDev(DiffusersText2Image):
    """``flux-dev``: FLUX.1-dev (gated) with the settings of its model card / ``FluxPipeline`` example
    (50 steps, distilled guidance 3.5, 1024², T5 max_sequence_length 512)."""

    name: ClassVar[str] = "flux-dev"
    defaults: ClassVar[dict[str, Any]] = {
        **COMMON_DEFAULTS,
        "weights": "black-forest-labs/FLUX.1-dev",
        "steps": 50,
        "guidance": 3.5,
        "resolution": 1024,
        "max_sequence_length": 512,
    }
