"""CLIP zero-shot colour classification of detected objects, as GenEval does it (docs/geneval.md, "Colour
classification").

open_clip ``ViT-L-14`` with ``openai`` weights by default; its eval transform; 10 colours × 3 templates
averaged per colour (clip-benchmark's zero-shot head), cached per class name; the object's mask is
composited on flat grey ``#999`` and cropped to its box. All crops of a scoring batch go through CLIP
in one forward pass (the official code builds a 4-worker DataLoader per object group instead).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from harness.benchmarks.geneval.rules import COLORS, Detection
from harness.scorers.clip import load_clip

if TYPE_CHECKING:
    from PIL import Image

TEMPLATES = ("a photo of a {c} {obj}", "a photo of a {c}-colored {obj}", "a photo of a {c} object")


def color_crop(image: Image.Image, det: Detection, bgcolor: str = "#999", crop: bool = True) -> Image.Image:
    """The object's pixels on a flat background (mask must match the image size), cropped to its box."""
    from PIL import Image

    if bgcolor != "original":
        if det.mask is None:
            raise ValueError("colour classification needs the detection's mask")
        mask = Image.fromarray(det.mask)
        if mask.size != image.size:
            raise ValueError(f"mask size {mask.size} != image size {image.size}")
        image = Image.composite(image, Image.new("RGB", image.size, bgcolor), mask)
    if crop:
        image = image.crop(tuple(det.box))  # PIL rounds the float box, like the official code
    return image


class ColorClassifier:
    """Zero-shot colour head over an open_clip model; loads once, classifies crops in batches."""

    def __init__(self, spec: str = "ViT-L-14:openai", device: str = "auto", bgcolor: str = "#999",
                 crop: bool = True, seed: int = 0):
        from harness.core.torchenv import resolve_device

        self.spec = spec
        self.bgcolor, self.crop = bgcolor, crop
        self.device = resolve_device(device)
        self.model, self.preprocess, self.tokenizer, self.arch, self.pretrained = load_clip(spec, self.device,
                                                                                           seed=seed)
        self._heads: dict[str, Any] = {}

    def fingerprint(self) -> dict[str, Any]:
        return {"clip": self.arch, "pretrained": self.pretrained, "bgcolor": self.bgcolor, "crop": self.crop}

    def _autocast(self) -> Any:
        import torch

        if self.device.startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.float16)  # clip-benchmark runs under amp
        return contextlib.nullcontext()

    def head(self, classname: str) -> Any:
        """(D, 10) zero-shot weights for one class name, cached for the whole run."""
        import torch
        import torch.nn.functional as F

        if classname not in self._heads:
            columns = []
            with torch.no_grad(), self._autocast():
                for color in COLORS:
                    texts = [t.format(c=color, obj=classname) for t in TEMPLATES]
                    emb = F.normalize(self.model.encode_text(self.tokenizer(texts).to(self.device)), dim=-1)
                    columns.append(F.normalize(emb.mean(dim=0), dim=-1))
            self._heads[classname] = torch.stack(columns, dim=1)
        return self._heads[classname]

    def classify(self, items: list[tuple[Image.Image, Detection, str]]) -> list[str]:
        """Colour of each ``(image, detection, class name)``, all crops in one forward pass."""
        import torch
        import torch.nn.functional as F

        if not items:
            return []
        crops = [self.preprocess(color_crop(img, det, self.bgcolor, self.crop)) for img, det, _ in items]
        with torch.no_grad(), self._autocast():
            feats = F.normalize(self.model.encode_image(torch.stack(crops).to(self.device)), dim=-1)
            out = []
            for feat, (_, _, classname) in zip(feats, items, strict=True):
                logits = 100.0 * feat @ self.head(classname)
                out.append(COLORS[int(logits.argmax())])
        return out
