"""Tiny DreamLite pipelines: build in code, save, reload via the real `from_pretrained`, generate, edit."""

from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import diffusers
import numpy as np
import PIL.Image as PIL_Image
import torch

from harness.models.dreamlite import prompt_template_prefix_lengths
from harness.models.tiny import build_tiny_dreamlite

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[2]
PROMPTS = ("a photo of a purple wine glass and a black apple", "a red dog on a blue chair")
SEEDS = (0, 1)
# Pinned in DreamLitePipeline.__init__ / DreamLiteMobilePipeline.__init__ (diffusers 0.42).
PINNED_DROP = {"generate": 34, "edit": 64}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models on a shared 2-core machine: one thread avoids multi-second spikes."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module", params=[False, True], ids=["base", "mobile"])
def pipe(request, tmp_path_factory):
    """A tiny pipeline, built into a folder and loaded back through the pipeline class's `from_pretrained`."""
    mobile = request.param
    folder = build_tiny_dreamlite(tmp_path_factory.mktemp("mobile" if mobile else "base"), mobile=mobile)
    cls = diffusers.DreamLiteMobilePipeline if mobile else diffusers.DreamLitePipeline
    loaded = cls.from_pretrained(folder)
    assert type(loaded) is cls
    loaded.set_progress_bar_config(disable=True)
    return loaded


@pytest.fixture(scope="module")
def source_image():
    """A non-square, non-constant source image for editing."""
    rng = np.random.RandomState(0)
    return PIL_Image.fromarray((rng.rand(96, 80, 3) * 255).astype(np.uint8))


def _run(pipe, *, image=None, size: int = 64, seeds=SEEDS, prompts=PROMPTS) -> list:
    """One image per (prompt, seed): the pipelines force batch size 1, so a batch is a loop of calls."""
    images = []
    for prompt, seed in zip(prompts, seeds, strict=True):
        out = pipe(
            prompt=prompt,
            image=image,
            height=size,
            width=size,
            num_inference_steps=2,
            generator=[torch.Generator("cpu").manual_seed(seed)],
        )
        assert len(out.images) == 1
        images.append(out.images[0])
    return images


def _digest(folder: pathlib.Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_import_is_light():
    code = "import sys, harness.models.tiny; sys.exit('torch' in sys.modules or 'diffusers' in sys.modules)"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_build_is_small_and_seeded(tmp_path):
    a = build_tiny_dreamlite(tmp_path / "a", seed=0)
    b = build_tiny_dreamlite(tmp_path / "b", seed=0)
    c = build_tiny_dreamlite(tmp_path / "c", seed=1)
    m = build_tiny_dreamlite(tmp_path / "m", mobile=True, seed=0)
    assert a == tmp_path / "a"
    size = sum(p.stat().st_size for p in a.rglob("*") if p.is_file())
    assert size < 5 * 2**20, size
    da, db, dc, dm = _digest(a), _digest(b), _digest(c), _digest(m)
    assert da == db
    weights = [k for k in da if k.endswith(".safetensors")]
    assert len(weights) == 3
    assert all(da[k] != dc[k] for k in weights)
    # Base and mobile share every component; only the pipeline class in model_index.json differs.
    assert [k for k in da if da[k] != dm[k]] == ["model_index.json"]


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("mode", ["generate", "edit"])
def test_generate_and_edit(pipe, source_image, mode, size):
    images = _run(pipe, image=source_image if mode == "edit" else None, size=size)
    for img in images:
        assert isinstance(img, PIL_Image.Image)
        assert img.size == (size, size)
        assert img.mode == "RGB"
        arr = np.asarray(img)
        assert arr.std() > 10, "flat image"
        assert len(np.unique(arr.reshape(-1, 3), axis=0)) > 32, "too few colours"
    assert images[0].tobytes() != images[1].tobytes()


@pytest.mark.parametrize("mode", ["generate", "edit"])
def test_seed_determinism(pipe, source_image, mode):
    image = source_image if mode == "edit" else None
    prompts = (PROMPTS[0],) * 3
    first, same, other = _run(pipe, image=image, seeds=(7, 7, 8), prompts=prompts)
    assert first.tobytes() == same.tobytes()
    assert first.tobytes() != other.tobytes()
    # A fresh call with a plain generator (not a list) gives the same bytes as the list of one.
    plain = pipe(
        prompt=PROMPTS[0],
        image=image,
        height=64,
        width=64,
        num_inference_steps=2,
        generator=torch.Generator("cpu").manual_seed(7),
    ).images[0]
    assert plain.tobytes() == first.tobytes()


def test_conditioning_is_used(pipe, source_image):
    """Prompt and source image both change the output (same seed)."""
    gen_a, gen_b = _run(pipe, seeds=(3, 3))
    assert gen_a.tobytes() != gen_b.tobytes()
    edit_a = _run(pipe, image=source_image, seeds=(3,), prompts=PROMPTS[:1])[0]
    edit_b = _run(pipe, image=PIL_Image.new("RGB", (64, 64), (255, 0, 0)), seeds=(3,), prompts=PROMPTS[:1])[0]
    assert edit_a.tobytes() != edit_b.tobytes()
    assert edit_a.tobytes() != gen_a.tobytes()


def test_prefix_lengths_match_pinned_drop_indices(pipe):
    lengths = prompt_template_prefix_lengths(pipe)
    assert lengths == {mode: (drop, drop) for mode, drop in PINNED_DROP.items()}


def test_prefix_mismatch_is_detected(pipe, monkeypatch):
    # A drop index that no longer fits the tokenizer.
    monkeypatch.setattr(pipe, "prompt_template_encode_generate_start_idx", 35)
    measured, drop = prompt_template_prefix_lengths(pipe)["generate"]
    assert (measured, drop) == (34, 35)
    # A template whose prefix tokenizes differently from the pinned index.
    short = (
        "<|im_start|>system\nDescribe.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>{}<|im_end|>\n<|im_start|>assistant\n"
    )
    monkeypatch.setattr(pipe, "prompt_template_encode_edit", short)
    measured, drop = prompt_template_prefix_lengths(pipe)["edit"]
    assert drop == 64
    assert measured != drop


def test_tokenizer(pipe):
    tok = pipe.tokenizer
    for token in ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>", "<|vision_end|>"):
        assert len(tok(token)["input_ids"]) == 1
    assert tok.convert_tokens_to_ids("<|image_pad|>") == pipe.text_encoder.config.image_token_id
    assert tok.convert_tokens_to_ids("<|vision_start|>") == pipe.text_encoder.config.vision_start_token_id
    assert pipe.processor.tokenizer.get_vocab() == tok.get_vocab()
    for text in (PROMPTS[0], "Zebra-42 ünïcode 🍎!"):  # unseen words fall back to byte tokens
        ids = tok(text)["input_ids"]
        assert tok.decode(ids) == text
    assert len(tok(PROMPTS[0])["input_ids"]) == 11


def test_pipelines_force_single_prompt(pipe):
    """Upstream trap: `prompt` must be a str (batch size is forced to 1), so batches are loops of calls."""
    with pytest.raises(ValueError, match="has to be of type `str`"):
        pipe(prompt=list(PROMPTS), height=64, width=64, num_inference_steps=2)
