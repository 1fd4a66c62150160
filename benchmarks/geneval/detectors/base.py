"""The detector protocol and the mmdet 2.x pre/post-processing that GenEval's numbers depend on.

A detector backend turns RGB images into, per image, ``{class name: [Detection, ...]}``: the top-100
(query, class) pairs of mmdet's ``MaskFormerFusionHead.instance_postprocess``, each with the score
``class prob × mean sigmoid inside the mask`` and the tight box of its binary mask (geneval.md §2.3).
The GenEval filtering (thresholds, max 16 per class) happens later, in the pure ``rules`` module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from benchmarks.geneval.classes import CLASS_NAMES
from benchmarks.geneval.rules import Detection

if TYPE_CHECKING:
    import torch
    from PIL import Image

MMDET_MEAN = (123.675, 116.28, 103.53)
MMDET_STD = (58.395, 57.12, 57.375)
SCALE = (1333, 800)  # mmdet Resize(img_scale=(1333, 800), keep_ratio=True)
SIZE_DIVISOR = 32
PAD_VALUE = 128
MAX_PER_IMAGE = 100


class Detector:
    """Base of detector backends: ``detect(images, min_score)`` plus a fingerprint and a results label."""

    name: ClassVar[str] = "detector"
    #: how results of this detector are labelled; numbers from different labels are never mixed
    label: ClassVar[str] = "GenEval-HF"
    defaults: ClassVar[dict[str, Any]] = {}

    def fingerprint(self) -> dict[str, Any]:
        raise NotImplementedError

    def detect(self, images: list[Image.Image], min_score: float = 0.0) -> list[dict[str, list[Detection]]]:
        """Detections per image; those with score <= ``min_score`` may be left out (they never survive)."""
        raise NotImplementedError


def rescaled_size(width: int, height: int, scale: tuple[int, int] = SCALE) -> tuple[int, int]:
    """mmdet's keep-ratio rescale: factor ``min(long_max/long, short_max/short)``, sizes ``int(x*s+0.5)``."""
    long_max, short_max = max(scale), min(scale)
    factor = min(long_max / max(width, height), short_max / min(width, height))
    return int(width * factor + 0.5), int(height * factor + 0.5)


def preprocess(
    image: Image.Image, device: Any, dtype: Any, scale: tuple[int, int] = SCALE
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Resize (bilinear, no antialias, like cv2), pad to a multiple of 32 with 128, normalise (RGB).

    Returns the padded ``(3, H_pad, W_pad)`` tensor and the resized ``(height, width)`` before padding.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    width, height = image.size
    new_w, new_h = rescaled_size(width, height, scale)
    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy())
    x = pixels.permute(2, 0, 1)[None].float()
    if (new_h, new_w) != (height, width):
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=False)
        x = x.round().clamp(0, 255)  # cv2 resizes uint8 to uint8
    pad_h = -new_h % SIZE_DIVISOR
    pad_w = -new_w % SIZE_DIVISOR
    x = F.pad(x, (0, pad_w, 0, pad_h), value=PAD_VALUE)
    mean = torch.tensor(MMDET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(MMDET_STD).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x[0].to(device=device, dtype=dtype), (new_h, new_w)


def instance_postprocess(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    resized: tuple[int, int],
    original: tuple[int, int],
    min_score: float = 0.0,
    class_names: tuple[str, ...] = CLASS_NAMES,
) -> dict[str, list[Detection]]:
    """mmdet 2.x ``instance_postprocess`` for one image.

    ``class_logits`` is ``(Q, C+1)``; ``mask_logits`` is ``(Q, h, w)`` at 1/4 of the padded input.
    Softmax over C+1 and drop no-object; top-100 over all (query, class) pairs; masks upsampled
    bilinearly to the padded input, cropped to ``resized``, upsampled again to ``original`` (H, W);
    score = class prob × mean sigmoid over the binary mask (logit > 0); box = tight mask box.
    Pairs whose class prob is <= ``min_score`` are dropped before the (costly) mask work: their score
    (<= prob) can never pass a threshold >= ``min_score``.
    """
    import torch.nn.functional as F

    num_classes = class_logits.shape[-1] - 1
    probs = F.softmax(class_logits.float(), dim=-1)[:, :num_classes]
    k = min(MAX_PER_IMAGE, probs.numel())
    top_probs, top_idx = probs.flatten().topk(k, sorted=True)
    keep = top_probs > min_score
    top_probs, top_idx = top_probs[keep], top_idx[keep]
    labels = top_idx % num_classes
    queries = top_idx // num_classes
    out: dict[str, list[Detection]] = {}
    if len(queries) == 0:
        return out
    masks = mask_logits[queries].float()[None]
    pad_h, pad_w = mask_logits.shape[-2] * 4, mask_logits.shape[-1] * 4
    masks = F.interpolate(masks, size=(pad_h, pad_w), mode="bilinear", align_corners=False)
    masks = masks[..., : resized[0], : resized[1]]
    masks = F.interpolate(masks, size=original, mode="bilinear", align_corners=False)[0]
    binary = masks > 0
    mask_scores = (masks.sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    scores = top_probs * mask_scores
    for i in range(len(queries)):
        box = mask_box(binary[i])
        det = Detection(box=box, score=float(scores[i]), mask=binary[i].cpu().numpy())
        out.setdefault(class_names[int(labels[i])], []).append(det)
    return out


def mask_box(mask: torch.Tensor) -> tuple[float, float, float, float]:
    """Tight box ``[x_min, y_min, x_max + 1, y_max + 1]`` of a bool mask; all zeros when empty."""
    import torch

    ys = torch.nonzero(mask.any(dim=1)).flatten()
    xs = torch.nonzero(mask.any(dim=0)).flatten()
    if len(xs) == 0:
        return (0.0, 0.0, 0.0, 0.0)
    return (float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1))
