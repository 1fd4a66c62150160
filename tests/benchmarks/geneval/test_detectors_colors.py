"""mmdet 2.x pre/post-processing on hand-made logits, the HF/tiny detector path, and CLIP colour crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from harness.benchmarks.geneval.classes import CLASS_NAMES
from harness.benchmarks.geneval.colors import ColorClassifier, color_crop
from harness.benchmarks.geneval.detectors.base import instance_postprocess, mask_boxes, preprocess, rescaled_size
from harness.benchmarks.geneval.detectors.hf_mask2former import HFMask2Former, TinyMask2Former, build_tiny_mask2former
from harness.benchmarks.geneval.rules import COLORS, Detection
from harness.core.errors import HarnessError


@pytest.mark.parametrize(
    ("size", "expected"),
    [((512, 512), (800, 800)), ((1024, 1024), (800, 800)), ((768, 768), (800, 800)),
     ((640, 480), (1067, 800)), ((2000, 500), (1333, 333))],
)
def test_mmdet_keep_ratio_rescale(size, expected):
    assert rescaled_size(*size) == expected


def test_preprocess_pads_to_32_and_normalises():
    image = Image.new("RGB", (100, 60), (123, 116, 103))
    x, resized = preprocess(image, "cpu", torch.float32)
    assert resized == (800, 1333)
    assert tuple(x.shape) == (3, 800, 1344)  # 1333 padded to a multiple of 32
    assert abs(float(x[0, 0, 0]) - (123 - 123.675) / 58.395) < 1e-4
    assert float(x[0, 0, 1340]) == pytest.approx((128 - 123.675) / 58.395)  # pad value 128, then normalised


def logits_with(q: int, entries: dict[tuple[int, int], float], num_classes: int = 80) -> torch.Tensor:
    """Class logits whose softmax puts probability p on (query, class) and the rest on no-object."""
    logits = torch.full((q, num_classes + 1), -30.0)
    logits[:, num_classes] = 0.0
    for (query, cls), p in entries.items():
        # softmax over [x, 0 (no-object)] = p  <=>  x = log(p / (1 - p)); other columns ~ 0
        logits[query, cls] = float(np.log(p / (1 - p)))
    return logits


def test_instance_postprocess_scores_boxes_and_pairs():
    q = 3
    cls = logits_with(q, {(0, 16): 0.9, (1, 0): 0.6})  # query 0 = dog, query 1 = person
    masks = torch.full((q, 8, 8), -10.0)  # 1/4 of a 32x32 padded input
    masks[0] = 2.0  # dog: the whole image, logit 2 everywhere
    masks[2, 2:4, 1:5] = 10.0  # query 2: only near-zero class probabilities
    out = instance_postprocess(cls, masks, resized=(32, 32), original=(32, 32))
    dog = out["dog"][0]
    sig = torch.sigmoid(torch.tensor(2.0)).item()
    assert dog.score == pytest.approx(0.9 * sig, rel=1e-4)  # class prob x mean sigmoid inside the mask
    assert dog.box.tolist() == [0.0, 0.0, 32.0, 32.0]  # tight box, +1 on the max
    assert dog.mask.shape == (32, 32) and dog.mask.dtype == bool and dog.mask.all()
    person = out["person"][0]
    assert person.score == 0.0 and person.box.tolist() == [0.0, 0.0, 0.0, 0.0]
    # float32 from the detector to the rules, classes in class-index order (as mmdet's per-class results)
    assert list(out) == sorted(out, key=CLASS_NAMES.index)
    assert all(d.boxes.dtype == d.scores.dtype == np.float32 and len(d.masks) == len(d) for d in out.values())


def test_top100_is_over_query_class_pairs_so_a_query_can_carry_two_labels():
    cls = logits_with(2, {})
    cls[0, 16] = 3.0  # dog
    cls[0, 17] = 3.0  # horse, same query
    cls[0, 80] = -5.0
    masks = torch.full((2, 4, 4), 5.0)
    out = instance_postprocess(cls, masks, resized=(16, 16), original=(16, 16))
    assert out["dog"][0].score == pytest.approx(out["horse"][0].score)
    assert out["dog"][0].score > 0.4


def test_min_score_prunes_pairs_that_cannot_pass():
    cls = logits_with(2, {(0, 16): 0.9, (1, 17): 0.2})
    masks = torch.full((2, 4, 4), 5.0)
    out = instance_postprocess(cls, masks, resized=(16, 16), original=(16, 16), min_score=0.3)
    assert "dog" in out and "horse" not in out


def test_mask_upsampled_twice_to_original_size():
    cls = logits_with(1, {(0, 2): 0.99})
    masks = torch.full((1, 200, 200), -5.0)
    masks[0, :100, :] = 5.0  # top half of the 800x800 input
    out = instance_postprocess(cls, masks, resized=(800, 800), original=(512, 512))
    car = out["car"][0]
    assert car.mask.shape == (512, 512)
    assert car.box[0] == 0 and car.box[2] == 512 and 250 <= car.box[3] <= 262


def test_mask_boxes_empty_and_full():
    m = torch.zeros(2, 5, 6, dtype=torch.bool)
    m[1, 1:3, 2:5] = True
    assert mask_boxes(m).tolist() == [[0.0, 0.0, 0.0, 0.0], [2.0, 1.0, 5.0, 3.0]]


def test_tiny_detector_roundtrips_through_real_from_pretrained(tmp_path):
    folder = build_tiny_mask2former(tmp_path / "m2f", seed=0)
    assert (folder / "config.json").is_file()
    hf = HFMask2Former(weights=str(folder), device="cpu", scale="333x200")
    tiny = TinyMask2Former()
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    a = hf.detect([image, image], min_score=0.3)
    b = tiny.detect([image], min_score=0.3)
    assert a[0].keys() == a[1].keys() == b[0].keys()
    assert set(a[0]) <= set(CLASS_NAMES)
    for name in a[0]:
        assert [d.score for d in a[0][name]] == pytest.approx([d.score for d in b[0][name]], abs=1e-5)
        assert all(d.mask.shape == (48, 64) for d in a[0][name])
    assert tiny.label == "GenEval-tiny-random" and hf.label == "GenEval-HF"


def test_detector_folder_errors(tmp_path):
    with pytest.raises(HarnessError, match="no config.json"):
        HFMask2Former(weights=str(tmp_path), device="cpu").resolve()
    with pytest.raises(HarnessError, match="no config.json"):
        HFMask2Former(weights=str(tmp_path), device="cpu").load()
    with pytest.raises(HarnessError, match="unknown option"):
        HFMask2Former(wieghts="x")


def test_color_crop_composites_on_grey_and_crops_to_box():
    image = Image.new("RGB", (10, 10), (255, 0, 0))
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:5, 3:6] = True
    crop = color_crop(image, Detection((2.0, 1.0, 7.0, 6.0), 0.9, mask))
    assert crop.size == (5, 5)
    pixels = np.asarray(crop)
    assert tuple(pixels[1, 1]) == (255, 0, 0)  # inside the mask (y=2, x=3)
    assert tuple(pixels[0, 0]) == (153, 153, 153)  # outside: #999
    original = color_crop(image, Detection((2.0, 1.0, 7.0, 6.0), 0.9, mask), bgcolor="original")
    assert tuple(np.asarray(original)[0, 0]) == (255, 0, 0)
    with pytest.raises(ValueError, match="mask size"):
        color_crop(Image.new("RGB", (12, 10)), Detection((0, 0, 1, 1), 0.9, mask))


def test_tiny_clip_classifies_in_one_batch_with_cached_heads():
    clf = ColorClassifier("tiny", device="cpu")
    image = Image.new("RGB", (32, 32), (0, 0, 255))
    mask = np.ones((32, 32), dtype=bool)
    items = [(image, Detection((0, 0, 32, 32), 0.9, mask), "car"),
             (image, Detection((0, 0, 16, 16), 0.9, mask), "car"),
             (image, Detection((0, 0, 32, 32), 0.9, mask), "vase")]
    colors = clf.classify(items)
    assert len(colors) == 3 and set(colors) <= set(COLORS)
    assert colors == clf.classify(items)  # deterministic
    assert sorted(clf._heads) == ["car", "vase"]
    assert tuple(clf.head("car").shape) == (16, 10)
    assert clf.classify([]) == []
