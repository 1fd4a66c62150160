"""The DreamLite adapters through the `tiny` model: real from_pretrained, both layouts, seeds, checks."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from harness.core.errors import HarnessError
from harness.models.dreamlite import DreamLite, DreamLiteBase, DreamLiteMobile
from harness.models.tiny import TinyDreamLite


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def tiny():
    model = TinyDreamLite()
    model.ensure_loaded()
    return model


def test_generate_is_deterministic_per_seed_and_sized(tiny):
    a = tiny.generate(["a photo of a dog", "a photo of a dog"], [1, 2])
    b = TinyDreamLite().generate(["a photo of a dog"], [1])
    assert [im.size for im in a] == [(64, 64), (64, 64)]
    assert png(a[0]) == png(b[0])  # same seed, fresh instance: byte-identical
    assert png(a[0]) != png(a[1])


def test_generate_uses_the_in_context_layout(tiny):
    seen = []
    handle = tiny.pipe.unet.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    try:
        tiny.generate(["a cat"], [0])
    finally:
        handle.remove()
    # (target | blank): the UNet sees twice the latent width; CFG doubles the batch
    assert seen and seen[0][-1] == 2 * seen[0][-2] and seen[0][0] == 2


def test_edit_uses_the_source(tiny):
    red = Image.new("RGB", (64, 64), (255, 0, 0))
    blue = Image.new("RGB", (64, 64), (0, 0, 255))
    a, b = tiny.edit([red, blue], ["make it green", "make it green"], [3, 3])
    assert a.size == (64, 64) and png(a) != png(b)
    assert png(tiny.edit([red], ["make it green"], [3])[0]) == png(a)


def test_sampler_overrides_per_call(tiny):
    assert tiny.generate(["a cat"], [0], resolution=128)[0].size == (128, 128)
    with pytest.raises(ValueError, match="one seed per prompt"):
        tiny.generate(["a", "b"], [0])


def test_template_prefix_mismatch_fails_loudly(tiny):
    tiny.pipe.prompt_template_encode_generate_start_idx += 1
    try:
        with pytest.raises(HarnessError, match="generate template prefix is 34 tokens.*drops 35"):
            DreamLite.check_prompt_templates(tiny.pipe, "weights-folder")
    finally:
        tiny.pipe.prompt_template_encode_generate_start_idx -= 1
    DreamLite.check_prompt_templates(tiny.pipe, "weights-folder")


def test_fingerprints():
    assert TinyDreamLite().model_hash() == TinyDreamLite(device="cpu").model_hash()
    assert TinyDreamLite().model_hash() != TinyDreamLite(steps=3).model_hash()
    mobile = TinyDreamLite(mobile=True)
    assert mobile.fingerprint()["pipeline"] == "DreamLiteMobilePipeline" and "guidance" not in mobile.fingerprint()
    assert DreamLiteMobile().fingerprint()["steps"] == 4 and DreamLiteMobile().options["weights"] == \
        "carlofkl/DreamLite-mobile"
    base = DreamLiteBase().fingerprint()
    assert base["steps"] == 28 and base["guidance"] == 3.5 and base["revision"] == "diffusers"
    assert "cpu_offload" not in base and "device" not in base


def test_mobile_tiny_generates_without_cfg():
    model = TinyDreamLite(mobile=True)
    model.ensure_loaded()
    seen = []
    handle = model.pipe.unet.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    try:
        assert model.generate(["a cat"], [0])[0].size == (64, 64)
    finally:
        handle.remove()
    assert seen[0][0] == 1  # one UNet forward per step, no CFG batch


def test_not_a_pipeline_folder(tmp_path):
    with pytest.raises(HarnessError, match="no model_index.json"):
        DreamLiteMobile(weights=str(tmp_path)).ensure_loaded()
