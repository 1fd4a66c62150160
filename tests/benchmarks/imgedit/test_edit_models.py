"""Edit baselines: the diffusers edit adapter on a tiny InstructPix2Pix built in code, gpt-image-1 on the peer."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from harness.core.errors import HarnessError
from harness.models.diffusers_edit import DiffusersEdit, FluxKontext, InstructPix2Pix, QwenImageEdit, target_size
from harness.models.openai_images import GPTImage1

T2I_TESTS = Path(__file__).resolve().parents[2] / "models" / "test_diffusers_t2i.py"
MAX_LEN = 77


def _t2i_helpers() -> ModuleType:
    """The CLIP vocabulary writer of the text-to-image adapter tests (offline tokenizer)."""
    name = "imgedit_t2i_helpers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, T2I_TESTS)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def tiny_ip2p(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight ``StableDiffusionInstructPix2PixPipeline`` saved with ``save_pretrained``."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionInstructPix2PixPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny_ip2p")
    vocab_size = _t2i_helpers()._write_clip_vocab(root / "tok")
    tokenizer = CLIPTokenizer.from_pretrained(root / "tok", model_max_length=MAX_LEN)
    assert len(tokenizer) == vocab_size  # the offline vocabulary was really read
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=8, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=4,
    )
    vae = AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4,
                        norm_num_groups=4, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"))
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=MAX_LEN, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                                set_alpha_to_one=False, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    folder = root / "pipeline"
    pipe.save_pretrained(folder)
    return folder


def _source(size: tuple[int, int] = (40, 24), color: tuple[int, int, int] = (200, 30, 30)) -> Any:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", size, color)
    ImageDraw.Draw(im).rectangle((4, 4, 12, 12), fill=(0, 0, 255))
    return im


def _ip2p(folder: Path, **opts: Any) -> DiffusersEdit:
    return DiffusersEdit(**({"weights": str(folder), "steps": 2, "guidance": 5.0, "image_guidance": 1.5,
                             "device": "cpu", "multiple": 8} | opts))


def test_ip2p_edits_are_seeded_sized_and_depend_on_the_source(tiny_ip2p: Path) -> None:
    model = _ip2p(tiny_ip2p)
    a = model.edit([_source(), _source()], ["make it blue", "make it blue"], [1, 2])
    assert model.pipeline_class_used == "StableDiffusionInstructPix2PixPipeline"
    assert [im.size for im in a] == [(40, 24), (40, 24)]  # the source's size (multiples of 8)
    again = model.edit([_source()], ["make it blue"], [1])
    assert np.array_equal(np.asarray(a[0]), np.asarray(again[0]))  # same seed, same image
    assert not np.array_equal(np.asarray(a[0]), np.asarray(a[1]))  # another seed
    other = model.edit([_source(color=(0, 200, 0))], ["make it blue"], [1])
    assert not np.array_equal(np.asarray(a[0]), np.asarray(other[0]))  # the edit reads the source image
    resized = _ip2p(tiny_ip2p, input_size=32).edit([_source()], ["x"], [1])[0]
    assert resized.size == target_size((40, 24), 32, 8) == (40, 24)


def test_ip2p_call_arguments_follow_the_pipeline_signature(tiny_ip2p: Path) -> None:
    model = _ip2p(tiny_ip2p)
    model.ensure_loaded()
    kwargs = model.call_kwargs((40, 24), {})
    assert kwargs == {"output_type": "pil", "num_inference_steps": 2, "guidance_scale": 5.0,
                      "image_guidance_scale": 1.5}  # no height/width/max_area: IP2P takes the image's size
    with pytest.raises(HarnessError, match="does not take true_cfg_scale"):
        _ip2p(tiny_ip2p, true_cfg=4.0).edit([_source()], ["x"], [1])


def test_kontext_gets_max_area_and_no_auto_resize() -> None:
    model = FluxKontext(device="cpu")
    model._accepts = {"image", "height", "width", "max_area", "_auto_resize", "guidance_scale", "num_inference_steps",
                      "output_type", "true_cfg_scale", "negative_prompt"}
    w, h = target_size((1200, 800), 1024, 16)
    assert (w * h) <= 1024 * 1024 and w % 16 == 0 and h % 16 == 0 and abs(w / h - 1.5) < 0.02
    kwargs = model.call_kwargs((w, h), {})
    assert kwargs["max_area"] == w * h and kwargs["_auto_resize"] is False
    assert (kwargs["width"], kwargs["height"]) == (w, h) and kwargs["guidance_scale"] == 2.5


def test_presets_differ_in_fingerprint_and_need_no_weights_option() -> None:
    hashes = {cls(device="cpu").model_hash() for cls in (InstructPix2Pix, FluxKontext, QwenImageEdit)}
    assert len(hashes) == 3
    assert QwenImageEdit(device="cpu").fingerprint()["true_cfg"] == 4.0
    with pytest.raises(HarnessError, match="needs weights"):
        DiffusersEdit()
    with pytest.raises(HarnessError, match="not a diffusers pipeline folder"):
        DiffusersEdit(weights=str(Path(__file__).parent), device="cpu").edit([_source()], ["x"], [1])


def test_gpt_image_1_through_the_images_edit_endpoint(peer: ModuleType, api_key: str) -> None:
    with peer.serve() as srv:
        model = GPTImage1(base_url=srv.url, size="1024x1024")
        out = model.edit([_source(), _source(color=(0, 0, 0))], ["invert it", "invert it"], [0, 0])
        assert srv.state.requests["/v1/images/edits"] == 2
        assert [im.size for im in out] == [(1024, 1024)] * 2
        assert out[1].getpixel((30, 20)) == (255, 255, 255)  # the peer inverts the uploaded image
        assert model.usage["requests"] == 2 and model.usage["output_tokens"] == 2 * 1056
        auto = GPTImage1(base_url=srv.url).edit([_source()], ["x"], [0])[0]
        assert auto.size == (40, 24)
        with pytest.raises(HarnessError, match=r"refused the edit .*HTTP 404"):
            GPTImage1(base_url=srv.url, model="dall-e-9").edit([_source()], ["x"], [0])
    assert "seed" in GPTImage1().fingerprint() and "api_key_env" not in GPTImage1().fingerprint()


def test_gpt_image_1_without_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(HarnessError, match="needs an API key: set OPENAI_API_KEY"):
        GPTImage1().edit([_source()], ["x"], [0])
