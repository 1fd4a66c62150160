"""The mmdet 2.x → transformers checkpoint loader of the official-detector backend (no mmdet needed).

A tiny Swin Mask2Former is built in transformers with every tensor perturbed (so a swapped or skipped tensor
changes outputs), written in the official mmdet 2.x key layout by the inverse map, read back through the
detector, and compared output for output. The map's mmdet side is checked against mmdet semantics that can be
rebuilt here (nn.Unfold patch merging, Swin's relative position index); the full comparison with mmdet itself is
the `parity` tox env (tests/parity/).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.benchmarks.geneval.classes import CLASS_NAMES
from harness.benchmarks.geneval.detectors import official as O
from harness.benchmarks.geneval.detectors.base import topk_instances
from harness.core.datafiles import DataFile, digest_matches, fetch, sha256_file
from harness.core.errors import HarnessError

TINY = O.Arch(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=7, feat_channels=32,
              out_channels=32, encoder_layers=2, encoder_ffn=64, decoder_layers=3, decoder_ffn=64, attention_heads=2,
              num_queries=20)


def perturbed_model(arch: O.Arch, seed: int = 0) -> torch.nn.Module:
    model = O.build_model(arch, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
        model.class_predictor.weight.mul_(20.0)  # peaky class probabilities: detections above GenEval's 0.3
    return model


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    model = perturbed_model(TINY)
    path = tmp_path_factory.mktemp("ckpt") / "tiny_mmdet2.pth"
    state = O.hf_to_mmdet2(model.state_dict(), TINY)
    torch.save({"meta": {"mmdet_version": "2.x-layout test", "CLASSES": CLASS_NAMES}, "state_dict": state}, path)
    return model, path, state


def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)),
            Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)),
            Image.fromarray(rng.integers(0, 255, (70, 50, 3), dtype=np.uint8))]


def test_roundtrip_through_official_layout_gives_identical_detections(tiny_checkpoint):
    model, path, _ = tiny_checkpoint
    # transformers' own arithmetic, so that the reloaded model must equal the original bit for bit
    det = O.OfficialMask2Former(weights=str(path), sha256=None, device="cpu", scale="333x200", attention="sdpa")
    det.load()
    assert det.arch == TINY and det.label.startswith(O.UNVERIFIED_LABEL)  # not the official file: never official
    assert det.label.endswith("[scale 333x200]")
    assert det.fingerprint()["checkpoint_sha256"] == sha256_file(path)
    imgs = images()
    got = det.detect_raw(imgs)
    from harness.benchmarks.geneval.detectors.base import preprocess

    for image, inst in zip(imgs, got, strict=True):
        x, resized = preprocess(image, "cpu", torch.float32, (333, 200), resize="cv2")
        with torch.no_grad():
            out = model(pixel_values=x[None])
        want = topk_instances(out.class_queries_logits[0], out.masks_queries_logits[0], resized,
                              (image.height, image.width))
        assert len(inst.labels) == 100
        assert np.array_equal(inst.labels, want.labels) and np.array_equal(inst.queries, want.queries)
        assert np.abs(inst.scores - want.scores).max() < 1e-6
        assert np.array_equal(inst.masks, want.masks) and np.array_equal(inst.boxes, want.boxes)
    dets = det.detect(imgs, min_score=0.3)
    assert any(dets) and all(set(d) <= set(CLASS_NAMES) for d in dets)
    assert all(x.score > 0 for d in dets for xs in d.values() for x in xs)


def test_mmdet_arithmetic_computes_the_same_function(tiny_checkpoint):
    """mmdet's operation order in the Swin backbone: the same network up to float rounding (bit-exactness with
    mmdet itself is checked by the parity env)."""
    model, path, _ = tiny_checkpoint
    det = load(path)
    assert det.options["attention"] == "mmdet"
    x = torch.randn(2, 3, 96, 160, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, b = det.model(pixel_values=x), model(pixel_values=x)
    assert torch.allclose(a.masks_queries_logits, b.masks_queries_logits, atol=1e-3)
    assert torch.allclose(a.class_queries_logits, b.class_queries_logits, atol=1e-3)
    assert "mmdet_qkv_weight" not in det.model.state_dict()  # derived copies never leak into checkpoints


def mask_box(mask: torch.Tensor) -> tuple[float, float, float, float]:
    """The definition, one mask at a time: ``[x_min, y_min, x_max + 1, y_max + 1]``, zeros when empty."""
    ys = torch.nonzero(mask.any(dim=1)).flatten()
    xs = torch.nonzero(mask.any(dim=0)).flatten()
    if len(xs) == 0:
        return (0.0, 0.0, 0.0, 0.0)
    return (float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1))


def test_mask_boxes_match_the_per_mask_definition():
    from harness.benchmarks.geneval.detectors.base import mask_boxes

    masks = torch.rand(40, 37, 53, generator=torch.Generator().manual_seed(0)) > 0.997
    masks[3] = False
    masks[4] = True
    expected = torch.tensor([mask_box(m) for m in masks])
    boxes = mask_boxes(masks)
    assert torch.equal(boxes, expected)
    assert boxes[3].tolist() == [0, 0, 0, 0] and boxes[4].tolist() == [0, 0, 53, 37]
    assert mask_boxes(torch.zeros(0, 5, 5, dtype=torch.bool)).shape == (0, 4)


def test_swin_s_key_map_covers_the_real_architecture():
    model = O.build_model(O.SWIN_S, seed=0)
    state = O.hf_to_mmdet2(model.state_dict(), O.SWIN_S)
    # names and shapes as in the official 2.x checkpoint (Swin-S: 18 blocks in stage 3, 9 decoder layers)
    assert tuple(state["backbone.stages.2.blocks.17.attn.w_msa.qkv.weight"].shape) == (1152, 384)
    assert tuple(state["backbone.stages.2.downsample.reduction.weight"].shape) == (768, 1536)
    assert tuple(state["backbone.norm3.weight"].shape) == (768,)
    assert tuple(state["panoptic_head.pixel_decoder.input_convs.0.conv.weight"].shape) == (256, 768, 1, 1)
    assert tuple(state["panoptic_head.pixel_decoder.encoder.layers.5.attentions.0.sampling_offsets.weight"].shape) \
        == (192, 256)
    assert tuple(state["panoptic_head.transformer_decoder.layers.8.attentions.1.attn.in_proj_weight"].shape) \
        == (768, 256)
    assert tuple(state["panoptic_head.cls_embed.weight"].shape) == (81, 256)
    assert "panoptic_head.transformer_decoder.layers.9.norms.0.weight" not in state
    assert O.infer_arch(state) == O.SWIN_S
    mapped = O.mmdet2_to_hf(state, O.SWIN_S)
    assert set(mapped) | set(O.HF_ONLY_KEYS) == set(model.state_dict())


def test_patch_merging_reorder_matches_mmdet_unfold_semantics():
    """mmdet's PatchMerging = nn.Unfold(2, stride 2) → LayerNorm(4C) → Linear(4C, 2C); rebuilt here."""
    from transformers.models.swin.modeling_swin import SwinPatchMerging

    dim, h, w = 8, 6, 10
    gen = torch.Generator().manual_seed(0)
    norm_w, norm_b = torch.randn(4 * dim, generator=gen), torch.randn(4 * dim, generator=gen)
    red = torch.randn(2 * dim, 4 * dim, generator=gen)
    x = torch.randn(2, h * w, dim, generator=gen)
    unfold = torch.nn.Unfold(kernel_size=2, stride=2)
    mm = unfold(x.view(2, h, w, dim).permute(0, 3, 1, 2)).transpose(1, 2)
    mm = torch.nn.functional.layer_norm(mm, (4 * dim,), norm_w, norm_b) @ red.T
    hf = SwinPatchMerging(dim)
    with torch.no_grad():
        hf.norm.weight.copy_(O.convert_tensor(norm_w, "unfold_n", "n"))
        hf.norm.bias.copy_(O.convert_tensor(norm_b, "unfold_n", "n"))
        hf.reduction.weight.copy_(O.convert_tensor(red, "unfold_w", "w"))
        assert torch.allclose(hf(x, (h, w)), mm, atol=1e-5)
    assert torch.equal(O.unconvert_tensor([O.convert_tensor(red, "unfold_w", "w")], "unfold_w"), red)


def test_relative_position_index_matches_transformers_swin():
    from transformers.models.swin.modeling_swin import SwinRelativePositionBias

    ours = O.relative_position_index(7)
    theirs = SwinRelativePositionBias(3, (7, 7))._create_relative_position_index()
    assert torch.equal(ours, theirs)


def save(tmp_path: Path, state: dict, name: str = "ckpt.pth") -> Path:
    path = tmp_path / name
    torch.save({"meta": {}, "state_dict": state}, path)
    return path


def load(path: Path, **options) -> O.OfficialMask2Former:
    det = O.OfficialMask2Former(weights=str(path), sha256=None, device="cpu", scale="333x200", **options)
    det.load()
    return det


def test_missing_extra_and_misshaped_keys_are_refused(tiny_checkpoint, tmp_path):
    _, _, state = tiny_checkpoint
    missing = dict(state)
    del missing["panoptic_head.transformer_decoder.layers.1.norms.2.bias"]
    with pytest.raises(HarnessError, match=r"1 missing key\(s\): panoptic_head.transformer_decoder.layers.1.norms"):
        load(save(tmp_path, missing))
    extra = dict(state, **{"panoptic_head.extra_head.weight": torch.zeros(3)})
    with pytest.raises(HarnessError, match=r"1 unexpected key\(s\): panoptic_head.extra_head.weight"):
        load(save(tmp_path, extra))
    shaped = dict(state)
    shaped["panoptic_head.pixel_decoder.mask_feature.bias"] = torch.zeros(7)
    with pytest.raises(HarnessError, match=r"mis-shaped.*mask_feature.bias \(7,\)"):
        load(save(tmp_path, shaped))
    index = dict(state)
    key = "backbone.stages.0.blocks.1.attn.w_msa.relative_position_index"
    index[key] = index[key].flip(0)
    with pytest.raises(HarnessError, match="relative position index"):
        load(save(tmp_path, index))


def test_wrong_checkpoint_kinds_are_refused_with_the_fix(tiny_checkpoint, tmp_path):
    model, path, state = tiny_checkpoint
    with pytest.raises(HarnessError, match="mmdet 3.x checkpoint"):
        load(save(tmp_path, O.mmdet2_to_mmdet3(state)))
    with pytest.raises(HarnessError, match="transformers Mask2Former state dict"):
        load(save(tmp_path, model.state_dict()))
    panoptic = dict(state)
    panoptic["panoptic_head.cls_embed.weight"] = torch.zeros(134, TINY.feat_channels)
    with pytest.raises(HarnessError, match="panoptic"):
        load(save(tmp_path, panoptic))
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(HarnessError, match="truncated or corrupt"):
        load(truncated)
    with pytest.raises(HarnessError, match="sha256 mismatch: expected 743b7d99"):
        O.OfficialMask2Former(weights=str(path), device="cpu").load()  # default: the official file's digest
    with pytest.raises(HarnessError, match="no such file"):
        O.OfficialMask2Former(weights=str(tmp_path / "absent.pth"), device="cpu").resolve()
    with pytest.raises(HarnessError, match="half precision is for CUDA only"):
        O.OfficialMask2Former(weights=str(path), sha256=None, device="cpu", dtype="bfloat16").resolve()
    with pytest.raises(HarnessError, match="unknown option"):
        O.OfficialMask2Former(wieghts="x")


class NotATensor:
    pass


def test_checkpoint_with_code_in_its_pickle_is_not_executed(tiny_checkpoint, tmp_path):
    _, _, state = tiny_checkpoint
    path = tmp_path / "object.pth"
    torch.save({"meta": {"obj": NotATensor()}, "state_dict": state}, path)
    with pytest.raises(HarnessError, match="trust_pickle=true"):
        load(path)
    assert load(path, trust_pickle=True).arch == TINY


def test_numpy_metadata_as_in_mmdet_checkpoints_loads_safely(tiny_checkpoint, tmp_path):
    _, _, state = tiny_checkpoint
    path = tmp_path / "numpy_meta.pth"
    torch.save({"meta": {"seed": np.int64(3), "arr": np.arange(3), "score": np.float32(0.5)}, "state_dict": state},
               path)
    assert load(path).arch == TINY


def test_msda_reference_agrees_with_grid_sample_implementation():
    from transformers.models.mask2former.modeling_mask2former import multi_scale_deformable_attention

    gen = torch.Generator().manual_seed(0)
    shapes = [(6, 5), (3, 3), (1, 2)]
    value = torch.randn(2, sum(h * w for h, w in shapes), 4, 8, generator=gen)
    loc = torch.rand(2, 11, 4, 3, 4, 2, generator=gen) * 1.4 - 0.2
    weights = torch.rand(2, 11, 4, 3, 4, generator=gen)
    ref = O.msda_reference(value, shapes, loc, weights)
    fast = multi_scale_deformable_attention(value, shapes, loc, weights)
    assert ref.shape == fast.shape == (2, 11, 32)
    assert torch.allclose(ref.float(), fast, atol=1e-5)


def test_fast_deformable_attention_is_bit_identical_to_the_mmcv_formulation():
    from transformers.models.mask2former.modeling_mask2former import multi_scale_deformable_attention

    gen = torch.Generator().manual_seed(1)
    shapes = [(7, 9), (4, 5), (2, 3)]
    for batch in (1, 3):
        value = torch.randn(batch, sum(h * w for h, w in shapes), 4, 8, generator=gen)
        loc = torch.rand(batch, 30, 4, 3, 4, 2, generator=gen) * 1.4 - 0.2
        weights = torch.rand(batch, 30, 4, 3, 4, generator=gen)
        assert torch.equal(O.msda_fast(value, shapes, loc, weights),
                           multi_scale_deformable_attention(value, shapes, loc, weights))


def test_selftest_refuses_to_score_with_a_broken_deformable_attention(tiny_checkpoint, monkeypatch):
    from transformers.models.mask2former import modeling_mask2former as m2f

    from harness.benchmarks.geneval.detectors.official import forward

    _, path, _ = tiny_checkpoint
    real = m2f.multi_scale_deformable_attention

    def garbage(value, shapes, locations, weights):  # what an unsupported CUDA kernel returns: plausible noise
        return real(value, shapes, locations, weights) * 0.5

    monkeypatch.setattr(m2f, "multi_scale_deformable_attention", garbage)  # transformers' kernel (attention=sdpa)
    with pytest.raises(HarnessError, match="self-test failed: multi-scale deformable attention on cpu"):
        load(path, attention="sdpa")
    fast = forward.msda_fast
    monkeypatch.setattr(forward, "msda_fast", lambda *a: fast(*a).roll(1, dims=1))  # ours (default): misplaced
    with pytest.raises(HarnessError, match="refusing to score"):
        load(path)
    monkeypatch.setattr(m2f, "multi_scale_deformable_attention", real)
    monkeypatch.setattr(forward, "msda_fast", fast)
    assert load(path).selftest_error < 1e-5


def test_image_modes_and_sizes(tiny_checkpoint):
    _, path, _ = tiny_checkpoint
    det = load(path)
    rgb = images()[0]
    rgba = rgb.convert("RGBA")
    rgba.putalpha(10)  # alpha is dropped, as cv2.imread(IMREAD_COLOR) does
    a, b = det.detect_raw([rgb, rgba])
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.scores, b.scores)
    grey = rgb.convert("L")
    c, d = det.detect_raw([grey, grey.convert("RGB")])
    assert np.array_equal(c.scores, d.scores)
    with pytest.raises(HarnessError, match="16-bit or float"):
        det.detect_raw([Image.new("I;16", (40, 30))])
    with pytest.raises(HarnessError, match="too elongated"):
        det.detect_raw([Image.new("RGB", (5000, 1))])
    (odd,) = det.detect_raw([Image.new("RGB", (33, 17), (200, 10, 10))])
    assert odd.masks.shape[1:] == (17, 33)


def test_checkpoint_urls_need_a_digest_and_fail_offline_with_the_fix(tiny_checkpoint, monkeypatch, tmp_path):
    import http.server
    import threading
    from functools import partial

    _, path, _ = tiny_checkpoint
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(HarnessError, match="a URL needs sha256=HEX"):
        O.resolve_checkpoint("http://127.0.0.1:9/x.pth", None)
    with pytest.raises(HarnessError, match="offline, pass a local copy with --detector-args weights PATH"):
        O.resolve_checkpoint("http://127.0.0.1:9/x.pth", "743b7d99")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(path.parent))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
        digest = sha256_file(path)
        got, full = O.resolve_checkpoint(url, digest[:8])  # a prefix pin, as OpenMMLab publishes them
        assert full == digest and got.read_bytes() == path.read_bytes() and got != path
        with pytest.raises(HarnessError, match="sha256 mismatch"):
            O.resolve_checkpoint(url.replace(path.name, path.name), "00000000")
    finally:
        server.shutdown()
        server.server_close()


def test_memory_reuse_switches_glibc_malloc_and_back():
    import ctypes
    import platform

    try:
        ctypes.CDLL("libc.so.6").mallopt  # noqa: B018
    except (OSError, AttributeError):
        pytest.skip("no glibc mallopt here")
    assert platform.system() == "Linux"
    assert O.reuse_freed_memory(True) is True
    assert O.reuse_freed_memory(False) is True


def test_digest_prefix_pins(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    digest = sha256_file(path)
    assert digest_matches(digest, digest[:8]) and digest_matches(digest, digest)
    assert not digest_matches(digest, digest[:7])  # too short to mean anything
    assert fetch(DataFile("f.bin", "http://127.0.0.1:9/none", digest[:8], "--x"), path) == path
    with pytest.raises(HarnessError, match="sha256 mismatch"):
        fetch(DataFile("f.bin", "http://127.0.0.1:9/none", "0" * 8, "--x"), path)


def test_importing_the_backends_does_not_import_torch():
    package = "harness.benchmarks.geneval.detectors"
    code = (f"import sys; import {package}.official.detector, {package}.official.convert, {package}.mmdet_backend; "
            f"from {package}.official import OfficialMask2Former, read_checkpoint; "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "from harness.registry import registry; names = registry('detectors').names(); "
            "assert 'mask2former-official' in names and 'mmdet' in names, names")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[3])


def test_mmdet_backend_without_mmdet_says_how_to_install():
    pytest.importorskip("torch")
    try:
        import mmdet  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("mmdet is installed here; the parity env exercises the backend")
    from harness.benchmarks.geneval.detectors.mmdet_backend import MMDetMask2Former

    detector = MMDetMask2Former(weights="x.pth", sha256=None, device="cpu")  # construction needs no mmdet
    with pytest.raises(HarnessError, match=r"needs mmdet.*\.\[mmdet\]"):
        detector.resolve()
    with pytest.raises(HarnessError, match=r"needs mmdet.*\.\[mmdet\]"):
        detector.load()


REPO = Path(__file__).resolve().parents[3]


def convert_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.benchmarks.geneval.detectors.official.convert", *args],
                          capture_output=True, text=True, cwd=REPO)


def test_converter_cli_writes_safetensors_that_load_to_identical_detections(tiny_checkpoint, tmp_path):
    _, path, _ = tiny_checkpoint
    done = convert_cli(str(path), str(tmp_path / "tiny"), "--sha256", "none")
    assert done.returncode == 0, done.stderr
    converted = tmp_path / "tiny.safetensors"
    assert converted.is_file() and f"weights={converted}" in done.stdout
    from_pth, from_file = load(path), load(converted)
    assert from_file.arch == TINY and from_file.weights == str(converted)
    # the file records the checkpoint it came from: same digest, same scorer fingerprint, same scoring units
    assert from_file.fingerprint() == from_pth.fingerprint()
    assert from_file.fingerprint()["checkpoint_sha256"] == sha256_file(path)
    for a, b in zip(from_pth.detect_raw(images()), from_file.detect_raw(images()), strict=True):
        assert np.array_equal(a.labels, b.labels) and np.array_equal(a.queries, b.queries)
        assert np.array_equal(a.scores, b.scores) and np.array_equal(a.boxes, b.boxes)
        assert np.array_equal(a.masks, b.masks)
    # the sha256 pin applies to the source checkpoint: a converted random model is not the official file
    with pytest.raises(HarnessError, match="sha256 mismatch: expected 743b7d99.*converted from"):
        O.OfficialMask2Former(weights=str(converted), device="cpu").load()


def test_converter_refuses_bad_input_in_one_line(tiny_checkpoint, tmp_path):
    from safetensors.torch import save_file

    _, path, _ = tiny_checkpoint
    missing = convert_cli(str(tmp_path / "absent.pth"), str(tmp_path / "out"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no such file" in missing.stderr
    wrong = convert_cli(str(path), str(tmp_path / "out"))  # default pin: the official file's digest
    assert wrong.returncode == 2 and "sha256 mismatch" in wrong.stderr and not (tmp_path / "out.safetensors").exists()
    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(1)}, str(foreign))
    with pytest.raises(HarnessError, match="not a checkpoint converted by"):
        O.OfficialMask2Former(weights=str(foreign), sha256=None).resolve()  # read from its header, in resolve()
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\xff" * 64)
    with pytest.raises(HarnessError, match="truncated or corrupt safetensors"):
        O.OfficialMask2Former(weights=str(corrupt), sha256=None).resolve()


def test_memory_reuse_is_switched_by_load_and_close_never_by_construction(tiny_checkpoint, monkeypatch):
    from harness.benchmarks.geneval.detectors.official import detector

    _, path, _ = tiny_checkpoint
    calls: list[bool] = []
    monkeypatch.setattr(detector, "reuse_freed_memory", lambda enabled=True: calls.append(enabled) or True)
    det = O.OfficialMask2Former(weights=str(path), sha256=None, device="cpu", scale="333x200", reuse_memory=True)
    det.resolve()
    assert calls == [] and not det.reuses_memory  # construction and resolve() leave the process alone
    det.load()
    det.load()  # idempotent: loaded (and switched) once
    assert calls == [True] and det.reuses_memory
    det.close()
    assert calls == [True, False] and not det.reuses_memory
    off = O.OfficialMask2Former(weights=str(path), sha256=None, device="cpu", scale="333x200", reuse_memory=False)
    off.load()
    off.close()
    assert calls == [True, False]
