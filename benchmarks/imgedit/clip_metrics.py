"""Offline CLIP metrics for edits (no judge): image similarity, text alignment, edit direction.

Per case, with open_clip (``--clip-metrics ARCH:PRETRAINED``, ``tiny`` = a random tiny CLIP for tests):

* ``clip_i``: cosine(source image, edited image): how much of the source is kept;
* ``clip_t``: cosine(edited image, instruction text): alignment of the result with the instruction;
* ``clip_dir``: cosine(edited − source image embedding, instruction text): whether the change points
  towards the instruction. ImgEdit ships no source/target captions, so this is the instruction-based
  variant, not the caption-pair directional similarity of StyleGAN-NADA/InstructPix2Pix.

A resumable stage of its own (``records/clip-<hash>-*.jsonl``), one record per case.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.core.hashing import content_hash


class ClipMetrics:
    """An open_clip model (see :mod:`harness.scorers.clip`) computing the three cosines in batches."""

    def __init__(self, spec: str, device: str = "auto"):
        from harness.core.torchenv import resolve_device
        from harness.scorers.clip import load_clip

        self.spec, self.device = spec, resolve_device(device)
        self.model, self.preprocess, self.tokenizer, _, _ = load_clip(spec, self.device, flag="--clip-metrics")

    def scorer_hash(self) -> str:
        return content_hash({"clip_metrics": self.spec, "version": 1}, 12)

    def __call__(self, items: Sequence[tuple[Path, Path, str]]) -> list[dict[str, float]]:
        """(source path, edited path, instruction) → {clip_i, clip_t, clip_dir} each."""
        import torch
        import torch.nn.functional as F
        from PIL import Image

        from harness.core.images import check_pixels

        def images(paths: list[Path]) -> Any:
            tensors = []
            for p in paths:
                check_pixels(p)
                with Image.open(p) as im:
                    tensors.append(self.preprocess(im.convert("RGB")))
            return torch.stack(tensors).to(self.device)

        with torch.no_grad():
            src = F.normalize(self.model.encode_image(images([s for s, _, _ in items])), dim=-1)
            out = F.normalize(self.model.encode_image(images([e for _, e, _ in items])), dim=-1)
            txt = F.normalize(self.model.encode_text(self.tokenizer([t for _, _, t in items]).to(self.device)), dim=-1)
            direction = F.normalize(out - src, dim=-1)
        return [{"clip_i": float(src[i] @ out[i]), "clip_t": float(out[i] @ txt[i]),
                 "clip_dir": float(direction[i] @ txt[i])} for i in range(len(items))]


def summarize_clip(records: Sequence[dict[str, Any]], spec: str) -> dict[str, Any]:
    """Means per edit type and over all cases (plain means; no judge involved)."""
    names = ("clip_i", "clip_t", "clip_dir")
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_type.setdefault(r["edit_type"], []).append(r)

    def means(rows: list[dict[str, Any]]) -> dict[str, float]:
        return {n: sum(r[n] for r in rows) / len(rows) for n in names}
    return {"spec": spec, "cases": len(records), "overall": means(list(records)) if records else {},
            "types": {t: means(rows) for t, rows in by_type.items()}}


def clip_process(metrics: ClipMetrics) -> Callable[[list[Any]], list[dict[str, Any]]]:
    """The CLIP stage's batch function over score units (``case``, ``source``, ``image``)."""

    def process(batch: list[Any]) -> list[dict[str, Any]]:
        values = metrics([(u.source, u.image, u.case.prompt) for u in batch])
        return [{"case": u.case.key, "edit_type": u.case.edit_type, **v} for u, v in zip(batch, values, strict=True)]

    return process
