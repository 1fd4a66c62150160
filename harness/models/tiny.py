"""Tiny random-weight DreamLite pipelines, built entirely in code and offline.

`build_tiny_dreamlite` writes a `save_pretrained` folder that loads back with the real
`DreamLitePipeline.from_pretrained` (or `DreamLiteMobilePipeline.from_pretrained` with ``mobile=True``)
and runs text-to-image and editing in milliseconds on CPU. Every component is built here, so nothing is
fetched from a model hub:

- a Qwen2-style byte-level BPE tokenizer trained with `tokenizers` on the pipeline's own chat templates and
  prompt wrappers (every template word becomes one token, so the template prefixes tokenize to exactly the
  pipeline's pinned drop indices; any other text falls back to byte tokens), plus the Qwen special tokens;
- a `Qwen3VLProcessor` with a small ``max_pixels`` so the pipeline's fixed 512x512 edit image becomes 4 image
  tokens;
- a tiny `Qwen3VLForConditionalGeneration` whose vision special-token ids match the tokenizer;
- a tiny `DreamLiteUNetModel` (real layout: ``text_proj_rms`` projection, ``time`` added embedding from the
  (width, height) time ids, GQA + RMS qk-norm, separable convs), a 4-stage (8x) `AutoencoderTiny` and a
  `FlowMatchEulerDiscreteScheduler` with dynamic shifting.

`prompt_template_prefix_lengths` measures, for a loaded pipeline, how many tokens its template prefixes
take under its own tokenizer/processor, next to the drop indices the pipeline will use, so an adapter can
fail loudly when they differ (the pipeline itself never checks).

Heavy libraries (torch, diffusers, transformers, tokenizers) are imported inside the functions only.
"""

from __future__ import annotations

import os
import pathlib
import re
from typing import Any, ClassVar

from harness.models.dreamlite import COMMON_DEFAULTS, MODES, TEMPLATE_ATTR, DreamLite

# Qwen2/Qwen3 special tokens, in Qwen's own id order (151643 ... 151656 in the real vocabulary).
QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)


# The user-prompt wrappers that `__call__` puts inside the templates (diffusers 0.42); training text only.
_PROMPT_WRAPPERS: tuple[str, ...] = (
    "[Generate]: ",
    "[Edit]: A diptych with two side-by-side images of the same scene. "
    "Compared to the right side, the left one has ",
)

# A few common prompt words so typical GenEval/ImgEdit prompts are not all byte tokens (not required).
_EXTRA_WORDS = (
    "a an the of and with on in to photo picture image make it add remove change replace turn into "
    "red orange yellow green blue purple pink brown black white gray "
    "dog cat car apple wine glass person bird cup chair table"
)

# Tiny sizes. The text hidden size is also the vision output size and the UNet's `encoder_hid_dim`.
_TEXT_HIDDEN = 32
_CROSS_ATTN_DIM = 32
_PATCH, _TEMPORAL_PATCH, _MERGE = 16, 2, 2
_MAX_PIXELS = 64 * 64  # 512x512 edit image -> 64x64 -> 4x4 patches -> 2x2 merged = 4 image tokens
_MIN_PIXELS = 32 * 32


def _template_texts(pipeline_cls: type) -> list[str]:
    """Return the chat templates of the installed `pipeline_cls` plus the user-prompt wrappers."""
    # The templates are plain attributes set in `__init__`; build a component-less instance to read them,
    # so the tokenizer follows whatever diffusers version is installed.
    pipe = pipeline_cls(
        text_encoder=None, tokenizer=None, processor=None, vae=None, unet=None, scheduler=None
    )
    return [getattr(pipe, TEMPLATE_ATTR.format(mode=m)) for m in MODES] + list(_PROMPT_WRAPPERS)


def _build_tokenizer(texts: list[str]) -> Any:
    """Train a Qwen2-style byte-level BPE on `texts` and wrap it as a `Qwen2Tokenizer`."""
    import json

    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    special = re.compile("|".join(re.escape(t) for t in QWEN_SPECIAL_TOKENS))
    corpus = [piece for text in texts for piece in special.split(text) if piece]
    corpus.append(_EXTRA_WORDS)

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    # A vocabulary far larger than needed: training stops once every word of the corpus is a single token.
    trainer = trainers.BpeTrainer(
        vocab_size=4096,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]

    tokenizer = Qwen2Tokenizer(vocab=model["vocab"], merges=merges)
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS])
    tokenizer.model_max_length = 32768
    return tokenizer


def _build_processor(tokenizer: Any) -> Any:
    """Qwen3-VL processor around `tokenizer` with a tiny pixel budget."""
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    common = {
        "patch_size": _PATCH,
        "temporal_patch_size": _TEMPORAL_PATCH,
        "merge_size": _MERGE,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }
    image_processor = Qwen2VLImageProcessor(
        size={"shortest_edge": _MIN_PIXELS, "longest_edge": _MAX_PIXELS}, **common
    )
    video_processor = Qwen3VLVideoProcessor(
        size={"shortest_edge": _MIN_PIXELS, "longest_edge": _MAX_PIXELS}, **common
    )
    return Qwen3VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor
    )


def _build_text_encoder(tokenizer: Any) -> Any:
    """Tiny Qwen3-VL whose vocabulary and vision special-token ids match `tokenizer`."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    ids = dict(
        zip(QWEN_SPECIAL_TOKENS, tokenizer.convert_tokens_to_ids(list(QWEN_SPECIAL_TOKENS)), strict=True)
    )
    head_dim = 8
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": _TEXT_HIDDEN,
            "intermediate_size": 2 * _TEXT_HIDDEN,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": head_dim,
            "max_position_embeddings": 4096,
            # mrope sections (temporal, height, width) must sum to head_dim / 2.
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [2, 1, 1],
                "mrope_interleaved": True,
            },
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_heads": 2,
            "patch_size": _PATCH,
            "temporal_patch_size": _TEMPORAL_PATCH,
            "spatial_merge_size": _MERGE,
            "out_hidden_size": _TEXT_HIDDEN,
            "num_position_embeddings": 16,
            "deepstack_visual_indexes": [0],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    return Qwen3VLForConditionalGeneration(config).eval()


def _build_unet() -> Any:
    """Tiny DreamLite UNet with the real model's text projection and (width, height) time-id embedding."""
    from diffusers import DreamLiteUNetModel

    time_dim = 8
    return DreamLiteUNetModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DreamLiteCrossAttnNoSelfAttnDownBlock2D", "DreamLiteCrossAttnDownBlock2D"),
        mid_block_type="DreamLiteUNetMidBlock2DCrossAttn",
        up_block_types=("DreamLiteCrossAttnUpBlock2D", "DreamLiteUpBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=8,
        cross_attention_dim=_CROSS_ATTN_DIM,
        transformer_layers_per_block=1,
        use_linear_projection=True,
        encoder_hid_dim=_TEXT_HIDDEN,
        encoder_hid_dim_type="text_proj_rms",
        addition_embed_type="time",
        addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=2 * time_dim,  # time_ids = (width, height)
        qk_norm="rms_norm",
        num_kv_heads=1,
        ff_mult=2,
        use_sep_conv=True,
    ).eval()


def _build_vae(seed: int) -> Any:
    """Tiny TAESD-like autoencoder: 4 encoder stages, so the VAE scale factor is 8 as in the real model.

    Random init leaves the decoder output near 0, i.e. images that are almost black after the pipeline's
    ``[-1, 1] -> [0, 1]`` clamp. The last decoder conv is rescaled (data-dependent, seeded) so that decoding
    standard-normal latents gives about 0.5 +- 0.25 per channel before that mapping: mid-tone images whose
    content visibly changes with the latents.
    """
    import torch
    from diffusers import AutoencoderTiny

    vae = AutoencoderTiny(
        in_channels=3,
        out_channels=3,
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
        latent_channels=4,
    ).eval()
    out_conv = vae.decoder.layers[-1]
    with torch.no_grad():
        latents = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(seed))
        out_conv.bias.zero_()
        x = vae.decoder.layers(torch.tanh(latents / 3) * 3)  # what DecoderTiny.forward does before `* 2 - 1`
        scale = 0.25 / x.std(dim=(0, 2, 3)).clamp_min(1e-6)
        out_conv.weight.mul_(scale[:, None, None, None])
        out_conv.bias.copy_(0.5 - x.mean(dim=(0, 2, 3)) * scale)
    return vae


def _build_scheduler() -> Any:
    """Flow-matching Euler scheduler with the real model's dynamic-shift settings."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )


def build_tiny_dreamlite(folder: str | os.PathLike, *, mobile: bool = False, seed: int = 0) -> pathlib.Path:
    """Build tiny random-weight DreamLite components in code, save_pretrained them into `folder`, return it.

    ``mobile=False`` writes a `DreamLitePipeline` folder, ``mobile=True`` a `DreamLiteMobilePipeline` one
    (both pipelines take the same six components; only `model_index.json` differs). Weights are
    deterministic under `seed` (`torch.manual_seed(seed)` before each component). Nothing is downloaded.
    """
    import torch
    from diffusers import DreamLiteMobilePipeline, DreamLitePipeline

    folder = pathlib.Path(folder)
    pipeline_cls = DreamLiteMobilePipeline if mobile else DreamLitePipeline
    tokenizer = _build_tokenizer(_template_texts(pipeline_cls))
    processor = _build_processor(tokenizer)
    torch.manual_seed(seed)
    text_encoder = _build_text_encoder(tokenizer)
    torch.manual_seed(seed)
    unet = _build_unet()
    torch.manual_seed(seed)
    vae = _build_vae(seed)
    scheduler = _build_scheduler()

    pipe = pipeline_cls(
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        processor=processor,
        vae=vae,
        unet=unet,
        scheduler=scheduler,
    )
    pipe.save_pretrained(folder)
    return folder


TINY_VERSION = 1


class TinyDreamLite(DreamLite):
    """``tiny``: a unified DreamLite model of tiny random-weight components, built in code on first use.

    The components are saved to the harness cache and loaded back through the real
    :class:`DreamLite` path (``from_pretrained`` + template-prefix check), so generation exercises the
    ``(target | blank)`` layout and editing the ``(target | source)`` layout of the real pipelines.
    Deterministic: the same seed and settings give byte-identical images. Its images mean nothing.
    ``mobile=true`` uses ``DreamLiteMobilePipeline`` (no CFG) instead of ``DreamLitePipeline``.
    """

    name: ClassVar[str] = "tiny"
    default_weights: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {
        **COMMON_DEFAULTS, "steps": 2, "resolution": 64, "dtype": "float32", "device": "cpu", "seed": 0,
        "mobile": False,
    }

    def __init__(self, **options: Any):
        super().__init__(**options)
        if self.options["mobile"]:
            self.pipeline_class = "DreamLiteMobilePipeline"
            self.uses_cfg = False

    def fingerprint(self) -> dict[str, Any]:
        fp = super().fingerprint()
        fp.pop("weights", None)  # a cache path; the version and seed identify the weights
        fp.pop("revision", None)
        fp["tiny_version"] = TINY_VERSION
        return fp

    def resolve(self) -> None:
        """Nothing to check: every weight is built in code by :meth:`load`."""

    def load(self) -> None:
        from harness.core.datafiles import cache_dir
        from harness.core.torchenv import quiet_hub_progress

        quiet_hub_progress()
        if not self.options["weights"]:
            variant = "mobile" if self.options["mobile"] else "base"
            folder = cache_dir() / "tiny" / f"dreamlite-v{TINY_VERSION}-{variant}-seed{self.options['seed']}"
            if not (folder / "model_index.json").is_file():
                _build_atomically(folder, mobile=bool(self.options["mobile"]), seed=int(self.options["seed"]))
            self.options["weights"] = str(folder)
        import diffusers

        level = diffusers.utils.logging.get_verbosity()
        diffusers.utils.logging.set_verbosity_error()  # AutoencoderTiny's harmless unknown-config-key notice
        try:
            super().load()
        finally:
            diffusers.utils.logging.set_verbosity(level)


def _build_atomically(folder: pathlib.Path, *, mobile: bool, seed: int) -> None:
    """Build into a temp folder and rename, so concurrent processes never see half a model."""
    import shutil
    import tempfile

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    build_tiny_dreamlite(tmp, mobile=mobile, seed=seed)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
