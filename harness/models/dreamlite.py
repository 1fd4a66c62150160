"""DreamLite adapters over diffusers' ``DreamLitePipeline`` (28-step base) and ``DreamLiteMobilePipeline``
(4-step, CFG distilled away).

One unified model, two modes, chosen by the inputs: text-to-image lays the latent out as
``(target | blank)`` and editing as ``(target | VAE-encoded source)`` along the width; the pipeline
keeps the left half. Weights: hub ids ``carlofkl/DreamLite-base`` / ``carlofkl/DreamLite-mobile``
(gated, ``diffusers`` branch) or any local folder written by ``save_pretrained``.

After every load the adapter checks the pipeline's pinned template-prefix drop indices (34 tokens for
generation, 64 for editing) against what its tokenizer actually produces: a mismatch would silently
feed part of the system prompt to the UNet (or drop user tokens), so it fails loudly instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

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

COMMON_DEFAULTS: dict[str, Any] = {
    "weights": None,  # hub id or local folder
    "revision": "diffusers",
    "dtype": "auto",
    "device": "auto",
    "steps": 28,
    "guidance": 3.5,
    "image_guidance": 1.5,
    "resolution": 1024,
    "max_sequence_length": 200,
    "cpu_offload": False,
}


# The pipelines' mode names and the attribute names their `__init__` sets (diffusers 0.42).
MODES: tuple[str, ...] = ("generate", "edit")
TEMPLATE_ATTR = "prompt_template_encode_{mode}"
DROP_INDEX_ATTR = "prompt_template_encode_{mode}_start_idx"
_PROBE_PROMPT = "a photo of a cat"


def _vision_start_token(processor: Any) -> str | None:
    """The token that opens the image block in the edit template (kept, not dropped, by the pipeline)."""
    token = getattr(processor, "vision_start_token", None)
    if token is None:
        token = getattr(getattr(processor, "tokenizer", None), "vision_start_token", None)
    return token


def prompt_template_prefix_lengths(pipe: Any) -> dict[str, tuple[int, int]]:
    """Return ``{mode: (tokenized template-prefix length, drop index the pipeline uses)}``, mode in MODES.

    The prefix is the template text before the user content (``{}``). In the edit template the image block
    (``<|vision_start|><|image_pad|><|vision_end|>``) sits just before ``{}`` and the pipeline keeps it as
    conditioning, so the edit prefix ends at the vision-start token. Generate prefixes are tokenized with
    ``pipe.tokenizer`` and edit prefixes with ``pipe.processor.tokenizer``, as `encode_prompt` does. The
    two numbers must be equal; otherwise the pipeline silently keeps part of the system prompt or drops user
    tokens.
    """
    result: dict[str, tuple[int, int]] = {}
    for mode in MODES:
        template: str = getattr(pipe, TEMPLATE_ATTR.format(mode=mode))
        drop_idx = int(getattr(pipe, DROP_INDEX_ATTR.format(mode=mode)))
        prefix = template[: template.index("{}")]
        if mode == "edit":
            tokenizer = pipe.processor.tokenizer
            vision_start = _vision_start_token(pipe.processor)
            if vision_start and vision_start in prefix:
                prefix = prefix[: prefix.index(vision_start)]
        else:
            tokenizer = pipe.tokenizer
        prefix_ids = tokenizer(text=[prefix])["input_ids"][0]
        # Count only the prefix tokens that survive unchanged in front of real user text, in case the
        # tokenizer merges across the template/prompt boundary.
        full_ids = tokenizer(text=[template.format(_PROBE_PROMPT)])["input_ids"][0]
        kept = 0
        for a, b in zip(prefix_ids, full_ids, strict=False):
            if a != b:
                break
            kept += 1
        result[mode] = (kept, drop_idx)
    return result


class DreamLite(ImageModel):
    """Shared DreamLite adapter; :class:`DreamLiteBase` and :class:`DreamLiteMobile` pick the pipeline."""

    name: ClassVar[str] = "dreamlite"
    capabilities: ClassVar[frozenset[str]] = frozenset({"generate", "edit"})
    pipeline_class: ClassVar[str] = "DreamLitePipeline"
    default_weights: ClassVar[str] = "carlofkl/DreamLite-base"
    uses_cfg: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = COMMON_DEFAULTS
    unhashed_options: ClassVar[frozenset[str]] = frozenset({"device", "cpu_offload"})

    def __init__(self, **options: Any):
        super().__init__(**options)
        if self.options["weights"] is None:
            self.options["weights"] = self.default_weights
        self.pipe: Any = None

    def fingerprint(self) -> dict[str, Any]:
        fp = super().fingerprint()
        fp["pipeline"] = self.pipeline_class
        fp["dtype"] = str(resolve_dtype(self.options["dtype"], resolve_device(self.options["device"])))
        if not self.uses_cfg:  # ignored by the mobile pipeline: they must not change the hash
            fp.pop("guidance", None)
            fp.pop("image_guidance", None)
        return fp

    def resolve(self) -> None:
        """The weights, in seconds: a diffusers pipeline folder, or a hub id cached (offline) or served."""
        check_pipeline_weights(self.options)

    def load(self) -> None:
        import diffusers

        device, dtype, weights, revision = pipeline_runtime(self.options)
        cls = getattr(diffusers, self.pipeline_class)
        try:
            pipe = cls.from_pretrained(weights, revision=revision, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise HarnessError(
                f"could not load {self.pipeline_class} from {weights!r}: {exc}. The hub weights are gated: "
                "request access, then `hf auth login` (or set HF_TOKEN); offline, pass weights=LOCAL_FOLDER."
            ) from exc
        self.check_prompt_templates(pipe, weights)
        if self.options["cpu_offload"]:
            pipe.enable_model_cpu_offload()
        else:
            pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe

    @staticmethod
    def check_prompt_templates(pipe: Any, source: str) -> None:
        """Fail loudly when the tokenizer's template prefix differs from the pipeline's drop index."""
        for mode, (actual, pinned) in prompt_template_prefix_lengths(pipe).items():
            if actual != pinned:
                raise HarnessError(
                    f"{source}: the {mode} template prefix is {actual} tokens with this tokenizer, but the "
                    f"pipeline drops {pinned}; the text conditioning would be wrong. Use the tokenizer/processor "
                    "that ship with the DreamLite weights."
                )

    def _call_kwargs(self, sampler: dict[str, Any]) -> dict[str, Any]:
        opts = {**self.options, **sampler}
        width, height = parse_resolution(opts["resolution"])
        kwargs = {"height": height, "width": width, "num_inference_steps": int(opts["steps"]),
                  "max_sequence_length": int(opts["max_sequence_length"])}
        if self.uses_cfg:
            kwargs["guidance_scale"] = float(opts["guidance"])
        return kwargs

    def generate(self, prompts: Sequence[str], seeds: Sequence[int], **sampler: Any) -> list[Any]:
        """Text-to-image, ``(target | blank)`` in-context layout.

        The DreamLite pipelines take one prompt and (in practice) one image per call: a list prompt is
        rejected and ``num_images_per_prompt > 1`` fails in the base pipeline, so a batch is a loop, each
        image with its own CPU generator.
        """
        if len(prompts) != len(seeds):
            raise ValueError("generate: one seed per prompt")
        self.ensure_loaded()
        kwargs = self._call_kwargs(sampler)
        return [self.pipe(prompt=prompt, generator=cpu_generators([seed])[0], output_type="pil", **kwargs).images[0]
                for prompt, seed in zip(prompts, seeds, strict=True)]

    def edit(self, images: Sequence[Any], instructions: Sequence[str], seeds: Sequence[int],
             **sampler: Any) -> list[Any]:
        """Instruction editing, ``(target | source)`` in-context layout; one call per (image, instruction)."""
        if not len(images) == len(instructions) == len(seeds):
            raise ValueError("edit: one image and one seed per instruction")
        self.ensure_loaded()
        kwargs = self._call_kwargs(sampler)
        if self.uses_cfg:
            kwargs["image_guidance_scale"] = float({**self.options, **sampler}["image_guidance"])
        out_images = []
        for image, instruction, seed in zip(images, instructions, seeds, strict=True):
            out = self.pipe(prompt=instruction, image=image.convert("RGB"), generator=cpu_generators([seed])[0],
                            output_type="pil", **kwargs)
            out_images.append(out.images[0])
        return out_images


class DreamLiteBase(DreamLite):
    """``dreamlite-base``: 28 steps, text CFG 3.5 (image CFG 1.5 for edits), 1024²."""

    name: ClassVar[str] = "dreamlite-base"


class DreamLiteMobile(DreamLite):
    """``dreamlite-mobile``: the 4-step distilled model, one UNet forward per step, no CFG."""

    name: ClassVar[str] = "dreamlite-mobile"
    pipeline_class: ClassVar[str] = "DreamLiteMobilePipeline"
    default_weights: ClassVar[str] = "carlofkl/DreamLite-mobile"
    uses_cfg: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {**COMMON_DEFAULTS, "steps": 4, "guidance": None, "image_guidance": None}
