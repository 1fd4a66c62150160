"""The detector contract and the mmdet 2.x pre/post-processing that GenEval's numbers depend on.

A detector is a :class:`~harness.api.scorer.Scorer`: built from its ``--detector-args`` options without loading
anything, :meth:`Detector.resolve` checks in seconds that its weights can be had, :meth:`Detector.load` loads them
once, and :meth:`Detector.detect` turns RGB images into, per image, ``{class name: ClassDetections}``: float32
boxes and scores with the masks aligned, as mmdet hands them to the official code. They are the top-100
(query, class) pairs of mmdet's ``MaskFormerFusionHead.instance_postprocess``, each with the score
``class prob × mean sigmoid inside the mask`` and the tight box of its binary mask (docs/geneval.md,
'Detector pre-processing' and 'Detector post-processing').
The GenEval filtering (thresholds, max 16 per class) happens later, in the pure ``rules`` module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from harness.api.scorer import Scorer
from harness.benchmarks.geneval.classes import CLASS_NAMES
from harness.benchmarks.geneval.rules import ClassDetections
from harness.core.errors import HarnessError
from harness.core.options import BOOLEAN, NON_NEGATIVE_INT, POSITIVE_INT, SIZE, Check, either, one_of

if TYPE_CHECKING:
    import torch
    from PIL import Image

MMDET_MEAN = (123.675, 116.28, 103.53)
MMDET_STD = (58.395, 57.12, 57.375)
SCALE = (1333, 800)  # mmdet Resize(img_scale=(1333, 800), keep_ratio=True)
SIZE_DIVISOR = 32
PAD_VALUE = 128
MAX_PER_IMAGE = 100


class Detector(Scorer):
    """Base of detector backends (registered under ``harness.detectors``).

    Construction checks the options only (``defaults``/``option_types``, one line naming ``--detector-args``);
    :meth:`resolve` checks that the weights can be had without loading them; :meth:`load` loads them once
    (:meth:`_load` in subclasses); :meth:`detect` loads on first use. ``label`` names the results: numbers of
    different labels are never mixed.
    """

    kind: ClassVar[str] = "detector"
    option_flag: ClassVar[str] = "--detector-args"
    name: ClassVar[str] = "detector"
    #: how results of this detector are labelled; numbers from different labels are never mixed
    label: ClassVar[str] = "GenEval-HF"
    defaults: ClassVar[Mapping[str, Any]] = {}
    #: what an option accepts where its default's type does not say it all (see harness.core.options)
    option_types: ClassVar[Mapping[str, Check]] = {
        "scale": SIZE, "seed": NON_NEGATIVE_INT, "batch": either("auto", POSITIVE_INT),
        "reuse_memory": either("auto", BOOLEAN),
        "attention": one_of("mmdet", "sdpa", "eager"),
    }
    #: where it runs, not what it computes: never part of a fingerprint
    unhashed_options: ClassVar[frozenset[str]] = frozenset({"device"})
    _loaded: bool = False

    def load(self) -> None:
        """Load the weights (once: later calls do nothing until :meth:`close`)."""
        if not self._loaded:
            self._load()
            self._loaded = True

    def _load(self) -> None:
        """Load the weights; called once by :meth:`load`."""

    def close(self) -> None:
        """Release what :meth:`load` acquired; a later :meth:`load` loads again."""
        self._loaded = False

    def fingerprint(self) -> dict[str, Any]:
        """Plain data naming everything that changes detections (backends list theirs explicitly)."""
        return {"detector": self.name, "label": self.label, **self.option_fingerprint()}

    def detect(self, images: list[Image.Image], min_score: float = 0.0) -> list[dict[str, ClassDetections]]:
        """Detections per image; those with score <= ``min_score`` may be left out (they never survive)."""
        raise NotImplementedError


def parse_scale(value: Any) -> tuple[int, int]:
    """The ``scale`` option (``N`` or ``LONGxSHORT``, checked by :data:`SIZE`) as ``(long, short)`` sides."""
    long_side, _, short_side = str(value).partition("x")
    return int(long_side), int(short_side or long_side)


def rescaled_size(width: int, height: int, scale: tuple[int, int] = SCALE) -> tuple[int, int]:
    """mmdet's keep-ratio rescale: factor ``min(long_max/long, short_max/short)``, sizes ``int(x*s+0.5)``."""
    long_max, short_max = max(scale), min(scale)
    factor = min(long_max / max(width, height), short_max / min(width, height))
    return int(width * factor + 0.5), int(height * factor + 0.5)


def resize_backend() -> str:
    """``cv2`` when OpenCV is importable (bit-identical to mmcv's resize), else ``torch``."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        return "torch"
    return "cv2"


def to_rgb_array(image: Image.Image) -> Any:
    """``(H, W, 3)`` uint8 RGB pixels; the only conversions are the ones mmdet's cv2 loader also makes.

    RGB passes through; grey (``L``), palette (``P``) and 1-bit images are expanded to RGB, alpha is dropped
    (``RGBA``, ``LA``, ``PA``), as ``cv2.imread(IMREAD_COLOR)`` does. 16-bit and float images are refused:
    cv2 rescales them to 8 bits while PIL clips them, so the official pipeline itself has no single answer.
    """
    import numpy as np

    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        raise HarnessError(f"image mode {image.mode!r} (16-bit or float) is not supported: GenEval's readers "
                           "disagree on it (cv2 rescales to 8 bits, PIL clips); save the image as 8-bit RGB PNG")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def preprocess(
    image: Image.Image, device: Any, dtype: Any, scale: tuple[int, int] = SCALE, resize: str = "auto"
) -> tuple[torch.Tensor, tuple[int, int]]:
    """mmdet 2.x test pipeline: keep-ratio resize (bilinear), pad to a multiple of 32 with 128, normalise (RGB).

    ``resize="cv2"`` calls ``cv2.resize(INTER_LINEAR)`` on uint8 exactly as mmcv's ``imrescale`` does (so the
    pixels are bit-identical to mmdet's); ``"torch"`` uses bilinear interpolation without antialias and
    rounds, which can differ from cv2's fixed-point arithmetic by one grey level; ``"auto"`` picks cv2 when
    installed. Padding (128, bottom/right) and normalisation (``(x - mean) * (1 / std)`` in float32) use the same
    cv2 calls as mmcv's ``impad``/``imnormalize`` on the cv2 path.
    Returns the padded ``(3, H_pad, W_pad)`` tensor and the resized ``(height, width)`` before padding.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    width, height = image.size
    new_w, new_h = rescaled_size(width, height, scale)
    if new_w < 1 or new_h < 1:
        raise HarnessError(f"image of {width}x{height} pixels is too elongated for mmdet's keep-ratio resize "
                           f"to {scale[0]}x{scale[1]} (one side would be 0 pixels); crop or pad it")
    pixels = to_rgb_array(image)
    backend = resize_backend() if resize == "auto" else resize
    pad_h = -new_h % SIZE_DIVISOR
    pad_w = -new_w % SIZE_DIVISOR
    if backend == "cv2":  # the very calls of mmcv's imrescale, impad and imnormalize_: bit-identical to mmdet
        import cv2

        pixels = cv2.resize(pixels, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        pixels = cv2.copyMakeBorder(pixels, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
        img = pixels.astype(np.float32)
        # mmdet's Normalize stores mean/std as float32 arrays; imnormalize_ widens them to float64
        cv2.subtract(img, np.float64(np.array(MMDET_MEAN, np.float32).reshape(1, -1)), img)
        cv2.multiply(img, 1 / np.float64(np.array(MMDET_STD, np.float32).reshape(1, -1)), img)
        x = torch.from_numpy(img).permute(2, 0, 1)[None]
    elif backend == "torch":
        x = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float()
        if (new_h, new_w) != (height, width):
            x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=False)
            x = x.round().clamp(0, 255)  # cv2 resizes uint8 to uint8
        x = F.pad(x, (0, pad_w, 0, pad_h), value=PAD_VALUE)
        mean = torch.tensor(MMDET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
        stdinv = torch.tensor([1.0 / s for s in MMDET_STD], dtype=torch.float32).view(1, 3, 1, 1)
        x = (x - mean) * stdinv
    else:
        raise HarnessError(f"resize={resize!r}: use auto, cv2 or torch")
    return x[0].to(device=device, dtype=dtype), (new_h, new_w)


@dataclass
class Instances:
    """The top-100 (query, class) pairs of one image, in score order: mmdet's ``instance_postprocess`` output.

    ``labels``/``queries`` are int arrays, ``scores`` float32, ``boxes`` ``(n, 4)`` float32, ``masks``
    ``(n, H, W)`` bool at the original image size.
    """

    labels: Any
    queries: Any
    scores: Any
    boxes: Any
    masks: Any

    def to_detections(self, class_names: tuple[str, ...] = CLASS_NAMES) -> dict[str, ClassDetections]:
        """``{class name: ClassDetections}`` in class-index order (the order of mmdet's per-class results, which the
        official ``details`` follow); each class's rows in this order, float32 as produced."""
        import numpy as np

        labels = np.asarray(self.labels)
        boxes = np.asarray(self.boxes, dtype=np.float32)
        scores = np.asarray(self.scores, dtype=np.float32)
        out: dict[str, ClassDetections] = {}
        for label in np.unique(labels).tolist():
            rows = np.flatnonzero(labels == label)
            out[class_names[label]] = ClassDetections(boxes[rows], scores[rows], [self.masks[i] for i in rows])
        return out


def topk_instances(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    resized: tuple[int, int],
    original: tuple[int, int],
    min_score: float = 0.0,
    max_per_image: int = MAX_PER_IMAGE,
) -> Instances:
    """mmdet 2.x ``instance_postprocess`` for one image (see :func:`instance_postprocess`)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    num_classes = class_logits.shape[-1] - 1
    probs = F.softmax(class_logits.float(), dim=-1)[:, :num_classes]
    k = min(max_per_image, probs.numel())
    top_probs, top_idx = probs.flatten().topk(k, sorted=True)
    keep = top_probs > min_score
    top_probs, top_idx = top_probs[keep], top_idx[keep]
    labels = top_idx % num_classes
    queries = top_idx // num_classes
    height, width = original
    if len(queries) == 0:
        return Instances(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32),
                         np.zeros((0, 4), np.float32), np.zeros((0, height, width), bool))
    # upsample each distinct query once (a query can carry several labels)
    unique, inverse = torch.unique(queries, return_inverse=True)
    masks = mask_logits[unique].float()[None]
    pad_h, pad_w = mask_logits.shape[-2] * 4, mask_logits.shape[-1] * 4
    masks = F.interpolate(masks, size=(pad_h, pad_w), mode="bilinear", align_corners=False)
    masks = masks[..., : resized[0], : resized[1]]
    masks = F.interpolate(masks, size=original, mode="bilinear", align_corners=False)[0]
    binary = masks > 0
    mask_scores = (masks.sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    scores = top_probs * mask_scores[inverse]
    boxes = mask_boxes(binary).cpu().numpy()
    binary_np = binary.cpu().numpy()
    inverse_np = inverse.cpu().numpy()
    return Instances(labels.cpu().numpy(), queries.cpu().numpy(), scores.float().cpu().numpy(),
                     boxes[inverse_np], binary_np[inverse_np])


def instance_postprocess(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    resized: tuple[int, int],
    original: tuple[int, int],
    min_score: float = 0.0,
    class_names: tuple[str, ...] = CLASS_NAMES,
) -> dict[str, ClassDetections]:
    """mmdet 2.x ``instance_postprocess`` for one image.

    ``class_logits`` is ``(Q, C+1)``; ``mask_logits`` is ``(Q, h, w)`` at 1/4 of the padded input.
    Softmax over C+1 and drop no-object; top-100 over all (query, class) pairs; masks upsampled
    bilinearly to the padded input, cropped to ``resized``, upsampled again to ``original`` (H, W);
    score = class prob × mean sigmoid over the binary mask (logit > 0); box = tight mask box.
    Pairs whose class prob is <= ``min_score`` are dropped before the (costly) mask work: their score
    (<= prob) can never pass a threshold >= ``min_score``.
    """
    return topk_instances(class_logits, mask_logits, resized, original, min_score).to_detections(class_names)


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes ``[x_min, y_min, x_max + 1, y_max + 1]`` (float32, ``(n, 4)``) of ``(n, H, W)`` bool masks;
    all zeros for an empty mask (mmdet's ``mask2bbox``, without its per-mask Python loop)."""
    import torch

    n, height, width = masks.shape
    x_any, y_any = masks.any(dim=1), masks.any(dim=2)
    if n == 0:
        return torch.zeros(0, 4)
    x0 = x_any.to(torch.uint8).argmax(1)  # argmax returns the first maximal index
    y0 = y_any.to(torch.uint8).argmax(1)
    x1 = width - x_any.flip(1).to(torch.uint8).argmax(1)
    y1 = height - y_any.flip(1).to(torch.uint8).argmax(1)
    boxes = torch.stack([x0, y0, x1, y1], 1).float()
    return boxes * x_any.any(1, keepdim=True)

