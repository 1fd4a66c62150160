"""CLIP zero-shot colour classification of detected objects, as GenEval does it (geneval.md §3.3).

open_clip ``ViT-L-14`` with ``openai`` weights by default; its eval transform; 10 colours × 3 templates
averaged per colour (clip-benchmark's zero-shot head), cached per class name; the object's mask is
composited on flat grey ``#999`` and cropped to its box. All crops of a scoring batch go through CLIP
in one forward pass (the official code builds a 4-worker DataLoader per object group instead).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.geneval.rules import COLORS, Detection
from harness.errors import HarnessError

if TYPE_CHECKING:
    from PIL import Image

TEMPLATES = ("a photo of a {c} {obj}", "a photo of a {c}-colored {obj}", "a photo of a {c} object")
TINY_ARCH = "harness-tiny-clip"
TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 224, "layers": 1, "width": 32, "patch_size": 32, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


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


def parse_clip_spec(spec: str) -> tuple[str, str | None]:
    """``"ViT-L-14:openai"`` → (arch, pretrained); ``"tiny"`` → the tiny random CLIP."""
    if spec == "tiny":
        return TINY_ARCH, None
    arch, _, pretrained = spec.partition(":")
    return arch, (pretrained or None)


#: weight files that hold no pickle (open_clip reads them with safetensors or numpy): nothing to refuse
_NO_PICKLE = (".safetensors", ".npz", ".npy")
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", *_NO_PICKLE)
_CHECKED: set[tuple[str, int, int]] = set()


def clip_spec_arg(spec: str) -> str:
    """argparse ``type=`` for ``--clip``/``--clip-metrics``: the spec, checked by :func:`check_clip_spec`
    while the command line is parsed (before any work), or a one-line usage error."""
    try:
        check_clip_spec(spec, flag="")
    except HarnessError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return spec


def check_clip_spec(spec: str, flag: str = "--clip") -> None:
    """Refuse a ``--clip ARCH:FILE`` whose file is missing, corrupt or carries code (one line).

    A local checkpoint is opened with the official detector's safe loader (tensors only, no code from the
    pickle), whatever open_clip version reads it afterwards. A file already checked is not read again.
    """
    where = f"{flag} {spec}: " if flag else ""
    _, pretrained = parse_clip_spec(spec)
    if not pretrained or not ("/" in pretrained or os.sep in pretrained or Path(pretrained).exists()
                              or Path(pretrained).suffix.lower() in _WEIGHT_SUFFIXES):
        return  # a pretrained tag such as "openai": open_clip downloads it
    path = Path(pretrained)
    if not path.is_file():
        raise HarnessError(f"{where}{path}: no such checkpoint file; pass ARCH:/path/to/checkpoint.pt or a "
                           "pretrained tag such as ViT-L-14:openai")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if path.suffix.lower() in _NO_PICKLE or key in _CHECKED:
        return
    from harness.core.checkpoints import read_checkpoint

    try:
        read_checkpoint(path, fix="an open_clip checkpoint must be a plain tensor file (a state_dict saved with "
                                  "torch.save, or .safetensors); re-save it, or use a pretrained tag such as openai")
    except HarnessError as exc:
        raise HarnessError(f"{where}{exc}") from None
    _CHECKED.add(key)


class ColorClassifier:
    """Zero-shot colour head over an open_clip model; loads once, classifies crops in batches."""

    def __init__(self, spec: str = "ViT-L-14:openai", device: str = "auto", bgcolor: str = "#999",
                 crop: bool = True, seed: int = 0):
        import open_clip
        import torch

        from harness.models.base import resolve_device

        self.spec = spec
        self.arch, self.pretrained = parse_clip_spec(spec)
        self.bgcolor, self.crop = bgcolor, crop
        self.device = resolve_device(device)
        check_clip_spec(spec)
        if self.arch == TINY_ARCH:
            _register_tiny_config()
            torch.manual_seed(seed)
        try:
            with _quiet_random_init_warning(self.arch == TINY_ARCH):
                model, _, preprocess = open_clip.create_model_and_transforms(
                    self.arch, pretrained=self.pretrained, device=self.device
                )
        except (RuntimeError, OSError, ValueError) as exc:
            raise HarnessError(
                f"--clip {spec}: could not load open_clip model {self.arch!r} with weights {self.pretrained!r} "
                f"({' '.join(str(exc).split())[:300]}); offline, pass --clip ARCH:/path/to/checkpoint.pt"
            ) from exc
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(self.arch)
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


def _register_tiny_config() -> None:
    import open_clip

    from harness.datafiles import cache_dir

    folder = cache_dir() / "tiny" / "open_clip_config"
    path = folder / f"{TINY_ARCH}.json"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(TINY_CONFIG))
        tmp.replace(path)
    open_clip.add_model_config(Path(folder))


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


@contextlib.contextmanager
def _quiet_random_init_warning(active: bool) -> Iterator[None]:
    """open_clip warns that a model without weights is random: for the tiny CLIP that is the point."""
    flt = _DropRandomInitWarning()
    root = logging.getLogger()
    if active:
        root.addFilter(flt)
        for handler in root.handlers:
            handler.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)
        for handler in root.handlers:
            handler.removeFilter(flt)
