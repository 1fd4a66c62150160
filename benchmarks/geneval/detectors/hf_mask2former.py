"""transformers Mask2Former backend ("GenEval-HF") and its tiny random-weight twin for demos and tests.

Default weights: ``facebook/mask2former-swin-small-coco-instance``, the FAIR/Detectron2 training of the
same architecture, *not* GenEval's official mmdet checkpoint; results are therefore labelled
"GenEval-HF". Pre- and post-processing follow mmdet 2.x (``detectors/base.py``), not transformers'
``post_process_instance_segmentation`` (which has its own thresholds).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from harness.benchmarks.geneval.classes import CLASS_NAMES
from harness.benchmarks.geneval.detectors.base import Detector, instance_postprocess, parse_scale, preprocess
from harness.benchmarks.geneval.rules import ClassDetections
from harness.core.errors import HarnessError
from harness.core.hub import check_weights, not_a_folder_of

if TYPE_CHECKING:
    from PIL import Image

TINY_VERSION = 2
def not_a_model_folder(folder: Path) -> str:
    return not_a_folder_of(folder, "config.json", "transformers model",
                           "pass a folder written by save_pretrained() or a hub id")


def check_hub_weights(weights: str, revision: str | None = None) -> None:
    """In seconds, without loading: a transformers model folder, or a hub id cached (offline) or served."""
    check_weights(weights, revision, marker="config.json", what="transformers model", flag="--detector-args")


class HFMask2Former(Detector):
    """Mask2Former through ``transformers.Mask2FormerForUniversalSegmentation`` (hub id or folder)."""

    name: ClassVar[str] = "mask2former-hf"
    label: ClassVar[str] = "GenEval-HF"
    defaults: ClassVar[dict[str, Any]] = {
        "weights": "facebook/mask2former-swin-small-coco-instance",
        "revision": None,
        "device": "auto",
        "dtype": "float32",
        "scale": "1333x800",  # mmdet Resize(img_scale=(1333, 800)); only change it for experiments
    }

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.scale = parse_scale(self.options["scale"])
        self.device: str | None = None  # resolved (torch) by resolve() or load()
        self.dtype: Any = None
        self.model: Any = None

    def _runtime(self) -> None:
        """Resolve ``device`` and ``dtype`` (imports torch; loads nothing)."""
        if self.device is None:
            from harness.core.torchenv import resolve_device, resolve_dtype

            device = resolve_device(self.options["device"])
            self.dtype = resolve_dtype(self.options["dtype"], device)
            self.device = device

    def resolve(self) -> None:
        """Device and dtype, and the weights: a local model folder, or a hub id cached (offline) or reachable."""
        self._runtime()
        check_hub_weights(str(self.options["weights"]), self.options["revision"])

    def _load(self) -> None:
        self._runtime()
        self.model = self._from_pretrained(str(Path(self._weights()).expanduser()))

    def close(self) -> None:
        self.model = None
        super().close()

    def _weights(self) -> str | Path:
        return self.options["weights"]

    def _from_pretrained(self, weights: str) -> Any:
        import transformers
        from transformers import Mask2FormerForUniversalSegmentation

        transformers.utils.logging.disable_progress_bar()
        local = Path(weights)
        if local.exists() and not (local / "config.json").is_file():
            raise HarnessError(not_a_model_folder(local))
        try:
            model = Mask2FormerForUniversalSegmentation.from_pretrained(weights, revision=self.options["revision"])
        except (OSError, ValueError) as exc:
            raise HarnessError(f"could not load Mask2Former from {weights!r}: {exc}. Offline, pass "
                               "--detector-args weights=LOCAL_FOLDER.") from exc
        if model.config.num_labels != len(CLASS_NAMES):
            raise HarnessError(f"{weights}: detector has {model.config.num_labels} classes; GenEval needs the "
                               f"{len(CLASS_NAMES)} COCO thing classes (an instance-segmentation checkpoint)")
        return model.to(self.device, self.dtype).eval()

    def fingerprint(self) -> dict[str, Any]:
        self._runtime()
        return {"detector": self.name, "label": self.label, "weights": str(self.options["weights"]),
                "revision": self.options["revision"], "dtype": str(self.dtype), "scale": list(self.scale)}

    def detect(self, images: list[Image.Image], min_score: float = 0.0) -> list[dict[str, ClassDetections]]:
        """Batch same-size images through the model (no cross-size padding), mmdet post-processing."""
        import torch

        self.load()

        results: list[dict[str, ClassDetections] | None] = [None] * len(images)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(image.size, []).append(i)
        for (width, height), idx in by_size.items():
            prepared = [preprocess(images[i], self.device, self.dtype, self.scale) for i in idx]
            pixels = torch.stack([p[0] for p in prepared])
            with torch.inference_mode():
                out = self.model(pixel_values=pixels)
            for j, i in enumerate(idx):
                results[i] = instance_postprocess(
                    out.class_queries_logits[j], out.masks_queries_logits[j], prepared[j][1], (height, width),
                    min_score,
                )
        return [r if r is not None else {} for r in results]


class TinyMask2Former(HFMask2Former):
    """A tiny random-weight Mask2Former built in code, saved, and loaded back through the real path.

    Its class head is scaled so that some random detections pass GenEval's thresholds, which exercises
    the colour and position code in demos; its scores mean nothing. It resizes to a short side of 200
    (not mmdet's 800) to keep the 2-core demo fast; everything else is the real path.
    """

    name: ClassVar[str] = "tiny"
    label: ClassVar[str] = "GenEval-tiny-random"
    defaults: ClassVar[dict[str, Any]] = {"seed": 0, "device": "cpu", "dtype": "float32", "revision": None,
                                          "weights": None, "scale": "333x200"}

    def resolve(self) -> None:
        """Device and dtype only: the weights are built in code by :meth:`load`."""
        self._runtime()

    def _weights(self) -> Path:
        from harness.core.datafiles import cache_dir

        folder = cache_dir() / "tiny" / f"mask2former-v{TINY_VERSION}-seed{self.options['seed']}"
        if not (folder / "config.json").is_file():
            build_tiny_mask2former(folder, seed=int(self.options["seed"]))
        self.options["weights"] = str(folder)
        return folder

    def fingerprint(self) -> dict[str, Any]:
        return {"detector": self.name, "label": self.label, "version": TINY_VERSION, "seed": self.options["seed"],
                "scale": list(self.scale)}


def build_tiny_mask2former(folder: str | Path, seed: int = 0) -> Path:
    """Build, save (atomically, via a temp folder) and return a tiny 80-class Mask2Former."""
    import tempfile

    import torch
    import transformers
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig

    folder = Path(folder)
    backbone = SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=7,
                          out_features=["stage1", "stage2", "stage3", "stage4"], drop_path_rate=0.0)
    config = Mask2FormerConfig(
        backbone_config=backbone, feature_size=32, mask_feature_size=32, hidden_dim=32,
        encoder_feedforward_dim=32, encoder_layers=1, decoder_layers=2, dim_feedforward=32,
        num_attention_heads=2, num_queries=100,
        id2label=dict(enumerate(CLASS_NAMES)), label2id={n: i for i, n in enumerate(CLASS_NAMES)},
    )
    torch.manual_seed(seed)
    model = Mask2FormerForUniversalSegmentation(config).eval()
    with torch.no_grad():  # peaky class probabilities, so that random detections cross 0.3 now and then
        model.class_predictor.weight.mul_(40.0)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    transformers.utils.logging.disable_progress_bar()
    model.save_pretrained(tmp)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process built it first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return folder
