"""Tests of the generic diffusers text-to-image adapter on a tiny random-weight Stable Diffusion pipeline.

The pipeline is built entirely in code (the model hub is unreachable): a tiny ``UNet2DConditionModel``, a
tiny ``AutoencoderKL``, a tiny ``CLIPTextModel`` and a ``CLIPTokenizer`` read from a small ``vocab.json`` +
``merges.txt`` written here. It is saved with ``save_pretrained`` and every test loads it back through the
real adapter path (``from_pretrained`` of a local folder).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from harness.core.errors import HarnessError
from harness.core.options import parse_pairs
from harness.models.diffusers_t2i import (
    DiffusersText2Image,
    FluxDev,
    Sana,
    StableDiffusion15,
    StableDiffusionXL,
)

PROMPTS = ["a photo of a cat", "a red dog"]
MERGES = [("c", "a"), ("ca", "t</w>"), ("d", "o"), ("do", "g</w>"), ("r", "e"), ("re", "d</w>")]
SPECIALS = ["<|startoftext|>", "<|endoftext|>"]
MAX_LEN = 77


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP byte-level alphabet: the 256 printable stand-ins for the 256 byte values."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def _write_clip_vocab(folder: Path) -> int:
    """Write CLIP-style ``vocab.json`` + ``merges.txt`` (bytes, bytes + ``</w>``, a few merges, specials)."""
    chars = _bytes_to_unicode()
    tokens = chars + [c + "</w>" for c in chars] + [a + b for a, b in MERGES] + SPECIALS
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    merges = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in MERGES)
    (folder / "merges.txt").write_text(merges, encoding="utf-8")
    return len(tokens)


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight ``StableDiffusionPipeline`` saved with ``save_pretrained``; returns the folder."""
    torch.set_num_threads(1)
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    root = tmp_path_factory.mktemp("tiny_sd")
    vocab_size = _write_clip_vocab(root / "tok")
    # Trap: without model_max_length the tokenizer reports ~1e30 and padding="max_length" explodes.
    tokenizer = CLIPTokenizer.from_pretrained(root / "tok", model_max_length=MAX_LEN)
    # Trap: CLIPTokenizer.from_pretrained("openai/...") offline gives an (almost) empty tokenizer without
    # failing, so check that the vocabulary written above was actually read.
    assert len(tokenizer) == vocab_size
    assert tokenizer("a cat")["input_ids"] == [vocab_size - 2, 320, 256 * 2 + 1, vocab_size - 1]

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=4,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=MAX_LEN, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    folder = root / "pipeline"
    pipe.save_pretrained(folder)
    assert (folder / "model_index.json").is_file()
    return folder


def _model(folder: Path, **options: Any) -> DiffusersText2Image:
    return DiffusersText2Image(**{"weights": str(folder), "steps": 2, "guidance": 5.0, "resolution": 32,
                                  "device": "cpu", **options})


def _arrays(images: list[Any]) -> list[np.ndarray]:
    return [np.asarray(im) for im in images]


# -- generation ---------------------------------------------------------------------------------------
def test_generate_size_and_type(tiny_sd: Path) -> None:
    model = _model(tiny_sd)
    images = model.generate(PROMPTS, [1, 2])
    assert len(images) == 2
    for im in images:
        assert im.size == (32, 32) and im.mode == "RGB"
    # auto → AutoPipelineForText2Image resolved the saved folder to the SD text-to-image class
    assert model.pipeline_class_used == "StableDiffusionPipeline"
    # sampler kwargs override the options per call; "WxH" is width x height
    wide = model.generate(PROMPTS[:1], [1], resolution="64x32")
    assert wide[0].size == (64, 32)


def test_same_seeds_identical_across_instances(tiny_sd: Path) -> None:
    first = _model(tiny_sd).generate(PROMPTS, [7, 8])
    second = _model(tiny_sd).generate(PROMPTS, [7, 8])
    assert [im.tobytes() for im in first] == [im.tobytes() for im in second]


def test_different_seeds_differ(tiny_sd: Path) -> None:
    model = _model(tiny_sd)
    a = _arrays(model.generate(PROMPTS, [1, 2]))
    b = _arrays(model.generate(PROMPTS, [3, 4]))
    assert not np.array_equal(a[0], b[0]) and not np.array_equal(a[1], b[1])
    # same prompt, two seeds in one batch: two different images
    c = _arrays(model.generate([PROMPTS[0]] * 2, [1, 2]))
    assert not np.array_equal(c[0], c[1])


def test_batch_equals_single_calls(tiny_sd: Path) -> None:
    model = _model(tiny_sd)
    batch = _arrays(model.generate(PROMPTS, [11, 12]))
    singles = _arrays(model.generate(PROMPTS[:1], [11]) + model.generate(PROMPTS[1:], [12]))
    # One CPU generator per image makes the initial latents identical; the batched UNet/VAE matmuls may still
    # round differently from batch size 1 on CPU (measured: up to 1 of 255 levels on some pixels), so allow a
    # difference of 2 levels instead of byte equality.
    for b, s in zip(batch, singles, strict=True):
        assert np.abs(b.astype(int) - s.astype(int)).max() <= 2


def test_negative_prompt_and_length_checks(tiny_sd: Path) -> None:
    model = _model(tiny_sd)
    plain = _arrays(model.generate(PROMPTS, [5, 6]))
    negative = _arrays(model.generate(PROMPTS, [5, 6], negative_prompt="blurry"))
    assert not np.array_equal(plain[0], negative[0])
    with pytest.raises(ValueError, match="one seed per prompt"):
        model.generate(PROMPTS, [1])
    with pytest.raises(HarnessError, match="per call"):
        model.generate(PROMPTS, [1, 2], dtype="float16")


# -- loading ------------------------------------------------------------------------------------------
def test_explicit_pipeline_class_and_auto_fallback(tiny_sd: Path, tmp_path: Path) -> None:
    explicit = _model(tiny_sd, pipeline="StableDiffusionPipeline")
    explicit.ensure_loaded()
    assert explicit.pipeline_class_used == "StableDiffusionPipeline"
    # A family AutoPipelineForText2Image has no mapping for: the adapter falls back to DiffusionPipeline.
    other = tmp_path / "panorama"
    shutil.copytree(tiny_sd, other)
    index = json.loads((other / "model_index.json").read_text())
    index["_class_name"] = "StableDiffusionPanoramaPipeline"
    (other / "model_index.json").write_text(json.dumps(index))
    fallback = _model(other)
    fallback.ensure_loaded()
    assert fallback.pipeline_class_used == "StableDiffusionPanoramaPipeline"
    with pytest.raises(HarnessError, match="StableDiffusionPipeline"):
        _model(tiny_sd, pipeline="StableDifusionPipeline").ensure_loaded()
    with pytest.raises(HarnessError, match="no such pipeline"):
        _model(tiny_sd, pipeline="UNet2DConditionModel").ensure_loaded()


def test_folder_without_model_index(tmp_path: Path) -> None:
    (tmp_path / "unet").mkdir()
    with pytest.raises(HarnessError) as info:
        _model(tmp_path).generate(PROMPTS[:1], [0])
    message = str(info.value)
    assert str(tmp_path) in message and "model_index.json" in message and "\n" not in message


def test_missing_weights() -> None:
    with pytest.raises(HarnessError, match="weights"):
        DiffusersText2Image(steps=2)
    with pytest.raises(HarnessError, match="did you mean 'steps'"):
        DiffusersText2Image(weights="x", step=2)


def test_unloadable_weights_wrapped() -> None:
    # not a folder and not a valid hub id: fails before any network access
    with pytest.raises(HarnessError, match="HF_TOKEN") as info:
        _model(Path("no such//folder")).ensure_loaded()
    assert "\n" not in str(info.value)


# -- fingerprint --------------------------------------------------------------------------------------
def test_fingerprint_steps_device_offload(tiny_sd: Path) -> None:
    base = _model(tiny_sd, dtype="float32")
    assert base.fingerprint()["steps"] == 2 and base.fingerprint()["dtype"] == "torch.float32"
    assert _model(tiny_sd, dtype="float32", steps=3).model_hash() != base.model_hash()
    assert _model(tiny_sd, dtype="float32", guidance=6.0).model_hash() != base.model_hash()
    # where it runs does not change the images: device and cpu_offload are left out of the hash
    assert _model(tiny_sd, dtype="float32", device="cuda").model_hash() == base.model_hash()
    assert _model(tiny_sd, dtype="float32", device="cuda", cpu_offload=True).model_hash() == base.model_hash()
    assert "device" not in base.fingerprint() and "cpu_offload" not in base.fingerprint()
    # numbers are normalized: 32 == "32x32", guidance 5 == 5.0
    assert _model(tiny_sd, dtype="float32", resolution="32x32", guidance=5).model_hash() == base.model_hash()
    # the hash is the same before and after loading
    before = base.model_hash()
    base.ensure_loaded()
    assert base.model_hash() == before


@pytest.mark.parametrize(
    ("cls", "name", "weights", "steps", "guidance", "resolution", "extra"),
    [
        (StableDiffusion15, "sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", 50, 9.0, "512x512", None),
        (StableDiffusionXL, "sdxl", "stabilityai/stable-diffusion-xl-base-1.0", 50, 9.0, "1024x1024", None),
        (Sana, "sana", "Efficient-Large-Model/Sana_1600M_1024px_diffusers", 20, 4.5, "1024x1024", None),
        (FluxDev, "flux-dev", "black-forest-labs/FLUX.1-dev", 50, 3.5, "1024x1024", 512),
    ],
)
def test_presets(cls: type[DiffusersText2Image], name: str, weights: str, steps: int, guidance: float,
                 resolution: str, extra: int | None) -> None:
    model = cls(device="cpu")
    fp = model.fingerprint()
    assert model.name == name and fp["adapter"] == name
    settings = (fp["weights"], fp["steps"], fp["guidance"], fp["resolution"])
    assert settings == (weights, steps, guidance, resolution)
    assert fp["max_sequence_length"] == extra
    assert fp["negative_prompt"] is None and fp["pipeline"] == "auto"
    assert model.pipe is None  # building never loads
    assert cls(device="cpu", steps=steps + 1).model_hash() != model.model_hash()


def test_presets_hash_apart() -> None:
    hashes = {cls(device="cpu").model_hash() for cls in (StableDiffusion15, StableDiffusionXL, Sana, FluxDev)}
    assert len(hashes) == 4


def test_parse_model_args_types() -> None:
    args = parse_pairs("dtype=float32,steps=4,guidance=7.5,offload=true,x=none", "--model-args")
    assert args == {"dtype": "float32", "steps": 4, "guidance": 7.5, "offload": True, "x": None}
    assert type(args["steps"]) is int and type(args["guidance"]) is float and args["offload"] is True
    options = parse_pairs("weights=/tmp/w,steps=4,guidance=7.5,resolution=64x32,cpu_offload=false", "--model-args")
    model = DiffusersText2Image(**options)
    assert model.fingerprint()["resolution"] == "64x32" and model.options["cpu_offload"] is False
