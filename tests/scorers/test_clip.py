"""The shared open_clip loader: specs, safe local checkpoints, resolving weights in seconds, the tiny CLIP."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from harness.scorers.clip import TINY_ARCH, load_clip, parse_clip_spec, resolve_clip

HUB_TAG = "ViT-B-32:laion2b_s34b_b79k"  # open_clip: hf_hub "laion/CLIP-ViT-B-32-laion2B-s34B-b79K/"
HUB_REPO = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face hub cache, offline."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def _cache_file(cache: Path, repo: str, filename: str) -> Path:
    """A file in the hub cache's layout (``models--org--name/snapshots/<rev>/<file>``, ``refs/main``)."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0123abcd")
    path = folder / "snapshots" / "0123abcd" / filename
    path.parent.mkdir(parents=True)
    path.write_bytes(b"weights")
    return path


def test_specs() -> None:
    assert parse_clip_spec("tiny") == (TINY_ARCH, None)
    assert parse_clip_spec("ViT-L-14:openai") == ("ViT-L-14", "openai")
    assert parse_clip_spec("ViT-B-32:/w/clip.pt") == ("ViT-B-32", "/w/clip.pt")
    assert parse_clip_spec("ViT-B-32") == ("ViT-B-32", None)


def test_tiny_resolves_without_anything(hf_cache: Path) -> None:
    resolve_clip("tiny")


def test_missing_local_checkpoint_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(HarnessError) as info:
        resolve_clip(f"ViT-B-32:{tmp_path / 'nope.pt'}", flag="--clip-metrics")
    message = str(info.value)
    assert message.startswith(f"--clip-metrics ViT-B-32:{tmp_path / 'nope.pt'}: {tmp_path / 'nope.pt'}: no such "
                              "checkpoint file") and "\n" not in message


def test_corrupt_local_checkpoint_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "clip.pt"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(HarnessError, match=r"clip.pt: truncated or corrupt checkpoint .*re-save it") as info:
        resolve_clip(f"ViT-B-32:{bad}")
    assert "\n" not in str(info.value)


def test_a_safe_local_checkpoint_resolves(tmp_path: Path) -> None:
    import torch

    good = tmp_path / "clip.pt"
    torch.save({"visual.proj": torch.zeros(2)}, good)
    resolve_clip(f"ViT-B-32:{good}")


def test_pretrained_tag_offline_not_cached_is_one_line(hf_cache: Path) -> None:
    with pytest.raises(HarnessError) as info:
        resolve_clip(HUB_TAG)
    message = str(info.value)
    assert message == (f"--clip {HUB_TAG}: the weights are not in the local cache and HF_HUB_OFFLINE=1 forbids "
                       f"downloading them (from Hugging Face hub {HUB_REPO}); fetch them once online, or pass "
                       "--clip ViT-B-32:/path/to/checkpoint")


@pytest.mark.parametrize("filename", ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"])
def test_pretrained_tag_offline_and_cached_resolves(hf_cache: Path, filename: str) -> None:
    _cache_file(hf_cache, HUB_REPO, filename)
    resolve_clip(HUB_TAG)
    with pytest.raises(HarnessError, match="not in the local cache"):  # another tag's repository is not there
        resolve_clip("ViT-L-14:openai")


def test_pretrained_tag_online_is_left_to_open_clip(hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    resolve_clip(HUB_TAG)


def test_unknown_architecture_or_tag_is_one_line(hf_cache: Path) -> None:
    with pytest.raises(HarnessError, match=r"^--clip ViT-L-41:openai: open_clip has no architecture 'ViT-L-41' "
                                           r"\(did you mean .*ViT-L-14.*\?\); "):
        resolve_clip("ViT-L-41:openai")
    with pytest.raises(HarnessError, match=r"^--clip ViT-B-32:laion9b: open_clip has no pretrained weights "
                                           r"'laion9b' for ViT-B-32; known tags: .*laion2b_s34b_b79k"):
        resolve_clip("ViT-B-32:laion9b")


def test_load_tiny_clip(tmp_path: Path) -> None:
    import torch

    model, preprocess, tokenizer, arch, pretrained = load_clip("tiny", "cpu")
    assert (arch, pretrained) == (TINY_ARCH, None) and not model.training
    again, *_ = load_clip("tiny", "cpu")
    with torch.no_grad():
        text = tokenizer(["a red cat"])
        assert torch.equal(model.encode_text(text), again.encode_text(text))  # seeded random weights
        from PIL import Image

        image = preprocess(Image.new("RGB", (40, 30), (200, 10, 10))).unsqueeze(0)
        assert tuple(model.encode_image(image).shape) == (1, 16)
