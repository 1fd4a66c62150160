"""The reference path: mmdetection's own Mask2Former inference on the official checkpoint (optional extra).

GenEval used mmdet 2.x, which no longer installs next to current torch; this backend runs mmdet 3.3 (with mmcv 2.1
built from source, README "mmdet backend") configured to reproduce the 2.x test pipeline:

* the official 2.x checkpoint is read by the same safe reader as ``mask2former-official`` and its transformer-layer
  keys are renamed the way mmdet 3.x's own converter does (``attentions.0`` → ``self_attn``/``cross_attn``,
  ``ffns.0`` → ``ffn``), then loaded strictly;
* the test pipeline is 2.x's: uint8 image (3.x's config loads float32), keep-ratio cv2 resize to 1333×800, pad to
  a multiple of 32 with 128 *before* normalisation (3.x pads with 0 after it; mmcv 2's ``Pad`` would also mark the
  padding as image), mmcv's ``Normalize`` (``imnormalize``, as 2.x; the data preprocessor then only stacks), one
  image per call;
* model forward, mask upsampling and ``instance_postprocess`` are mmdet's.

Used by the parity tests (``tox -e parity``) and by users who want the reference path.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar

from harness.benchmarks.geneval.detectors.base import (
    MMDET_MEAN,
    MMDET_STD,
    SCALE,
    SIZE_DIVISOR,
    Detector,
    Instances,
    to_rgb_array,
)
from harness.benchmarks.geneval.detectors.official import (
    OFFICIAL_SHA256_PREFIX,
    OFFICIAL_URL,
    SWIN_S,
    Arch,
    CheckpointError,
    check_checkpoint_available,
    hex_digest_option,
    mmdet2_arch,
    mmdet2_to_mmdet3,
    resolve_checkpoint,
    results_label,
)
from harness.benchmarks.geneval.detectors.official.convert import is_converted
from harness.benchmarks.geneval.rules import ClassDetections
from harness.core.checkpoints import read_checkpoint
from harness.core.errors import HarnessError

if TYPE_CHECKING:
    from PIL import Image

SWIN_S_CONFIG = "mask2former/mask2former_swin-s-p4-w7-224_8xb2-lsj-50e_coco.py"  # shipped in mmdet/.mim/configs


def import_mmdet() -> Any:
    """Import mmdet (and mmcv's compiled ops) or explain in one line how to get them."""
    try:
        import mmcv
        import mmdet
        from mmcv.ops import MultiScaleDeformableAttention  # noqa: F401  (needs the compiled ops)
    except (ImportError, OSError) as exc:  # OSError: ops built for another torch (undefined symbols)
        raise HarnessError(
            f"detector 'mmdet' needs mmdet 3.3 with mmcv 2.1 and its compiled ops ({exc}); install them with "
            "pip install '.[mmdet]' && python scripts/install_mmcv.py (README, 'mmdet backend'), or use "
            "--detector mask2former-official (same checkpoint, no mmcv)") from None
    return mmdet, mmcv


class _Pad2x:
    """mmdet 2.x ``Pad(size_divisor=32, pad_val=dict(img=(128, 128, 128)))`` on the uint8 image, before
    normalisation. The value is a 3-tuple as in the config: a scalar 128 would pad only the first channel (cv2
    reads a scalar as (128, 0, 0)). Keeps ``img_shape`` at the resized size, as 2.x did, so the head crops the
    padding off the masks (mmcv 2's ``Pad`` would set it to the padded size).
    """

    def __call__(self, results: dict[str, Any]) -> dict[str, Any]:
        import mmcv

        results["img"] = mmcv.impad_to_multiple(results["img"], SIZE_DIVISOR, pad_val=(128, 128, 128))
        results["pad_shape"] = results["img"].shape[:2]
        return results


def mmdet_config(arch: Arch, config_path: str | None = None) -> Any:
    """The mmdet 3.3 Swin-S instance config, its shapes set to ``arch`` and its weights left to us."""
    import mmdet
    from mmengine.config import Config

    path = config_path or os.path.join(os.path.dirname(mmdet.__file__), ".mim", "configs", SWIN_S_CONFIG)
    if not os.path.isfile(path):
        raise HarnessError(f"{path}: mmdet config not found; pass --detector-args config=PATH to "
                           "mask2former_swin-s-p4-w7-224_8xb2-lsj-50e_coco.py")
    cfg = Config.fromfile(path)
    model = cfg.model
    model.backbone.init_cfg = None  # no download of ImageNet Swin weights: the checkpoint provides everything
    model.backbone.update(embed_dims=arch.embed_dim, depths=list(arch.depths), num_heads=list(arch.num_heads),
                          window_size=arch.window_size,
                          mlp_ratio=int(arch.mlp_ratio) if float(arch.mlp_ratio).is_integer() else arch.mlp_ratio)
    head = model.panoptic_head
    head.update(in_channels=[arch.embed_dim * 2**i for i in range(len(arch.depths))],
                feat_channels=arch.feat_channels, out_channels=arch.out_channels, num_queries=arch.num_queries,
                num_things_classes=arch.num_classes, num_stuff_classes=0)
    head.loss_cls.class_weight = [1.0] * arch.num_classes + [0.1]
    enc = head.pixel_decoder.encoder
    enc.num_layers = arch.encoder_layers
    enc.layer_cfg.self_attn_cfg.update(embed_dims=arch.feat_channels, num_heads=arch.attention_heads)
    enc.layer_cfg.ffn_cfg.update(embed_dims=arch.feat_channels, feedforward_channels=arch.encoder_ffn)
    head.pixel_decoder.positional_encoding.num_feats = arch.feat_channels // 2
    head.positional_encoding.num_feats = arch.feat_channels // 2
    dec = head.transformer_decoder
    dec.num_layers = arch.decoder_layers
    for key in ("self_attn_cfg", "cross_attn_cfg"):
        dec.layer_cfg[key].update(embed_dims=arch.feat_channels, num_heads=arch.attention_heads)
    dec.layer_cfg.ffn_cfg.update(embed_dims=arch.feat_channels, feedforward_channels=arch.decoder_ffn)
    model.panoptic_fusion_head.update(num_things_classes=arch.num_classes, num_stuff_classes=0)
    model.test_cfg.update(panoptic_on=False, semantic_on=False, instance_on=True, max_per_image=100)
    # 2.x normalised in the pipeline (mmcv.imnormalize, after padding with 128); the model gets that tensor as is
    model.data_preprocessor.update(mean=None, std=None, bgr_to_rgb=False, pad_size_divisor=SIZE_DIVISOR)
    return cfg


def build_mmdet_model(arch: Arch = SWIN_S, device: str = "cpu", config_path: str | None = None) -> Any:
    """An mmdet 3.3 Mask2Former of ``arch`` with mmdet's own weight initialisation (random weights)."""
    import_mmdet()
    import logging

    from mmdet.apis import init_detector
    from mmengine.logging import MMLogger

    model = init_detector(mmdet_config(arch, config_path), checkpoint=None, device=device, palette="none")
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs one line per tensor
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model.eval()


class MMDetMask2Former(Detector):
    """mmdet's ``inference_detector`` on the official checkpoint, one image per call, 2.x pre-processing."""

    label: ClassVar[str] = "GenEval (official detector)"
    name: ClassVar[str] = "mmdet"
    defaults: ClassVar[dict[str, Any]] = {
        "weights": "official",
        "sha256": OFFICIAL_SHA256_PREFIX,
        "device": "auto",
        "config": None,
        "trust_pickle": False,
    }

    unhashed_options: ClassVar[frozenset[str]] = frozenset({"device", "trust_pickle"})

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.expected_sha256 = hex_digest_option(self.options["sha256"])
        self.device: str | None = None
        self.model: Any = None
        self.arch: Arch | None = None
        self.sha256: str | None = None
        # what the options promise; final once loaded (the digest and shapes of the file)
        self.label = results_label(self.expected_sha256 or "", SWIN_S)  # type: ignore[misc]

    def resolve(self) -> None:
        """mmdet and mmcv's compiled ops importable, the config file there, the checkpoint available."""
        import_mmdet()
        weights, config = str(self.options["weights"]), self.options["config"]
        if is_converted(weights):
            raise HarnessError(f"--detector-args weights={weights}: the mmdet backend reads the mmdet 2.x .pth, "
                               "not a converted file (that is for --detector mask2former-official)")
        if config is not None and not os.path.isfile(str(config)):
            raise HarnessError(f"--detector-args config={config}: no such file; pass the path of "
                               "mask2former_swin-s-p4-w7-224_8xb2-lsj-50e_coco.py")
        check_checkpoint_available(weights, self.options["sha256"])

    def _load(self) -> None:
        import_mmdet()
        from harness.core.torchenv import resolve_device

        self.device = resolve_device(self.options["device"])
        path, self.sha256 = resolve_checkpoint(self.options["weights"], self.options["sha256"])
        state, _ = read_checkpoint(path, trust_pickle=bool(self.options["trust_pickle"]), source=OFFICIAL_URL)
        self.arch = mmdet2_arch(state, str(path))
        model = build_mmdet_model(self.arch, "cpu", self.options["config"])
        result = model.load_state_dict(mmdet2_to_mmdet3(state), strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise CheckpointError(f"{path}: mmdet's model has {len(result.missing_keys)} missing key(s) "
                                  f"{result.missing_keys[:3]} and {len(result.unexpected_keys)} unexpected "
                                  f"{result.unexpected_keys[:3]}")
        del state
        self.model = model.to(self.device).eval()
        self.label = results_label(self.sha256, self.arch)  # type: ignore[misc]
        self._queries: list[Any] = []
        self._wrap_instance_postprocess()
        self._pipeline = self._test_pipeline()

    def close(self) -> None:
        self.model = None
        super().close()

    def _wrap_instance_postprocess(self) -> None:
        """Record which query each of mmdet's top-100 detections came from (same ``topk`` call, same order)."""
        import torch.nn.functional as F

        head = self.model.panoptic_fusion_head
        original = head.instance_postprocess

        def recorded(mask_cls: Any, mask_pred: Any) -> Any:
            scores = F.softmax(mask_cls, dim=-1)[:, :-1]
            _, top = scores.flatten(0, 1).topk(head.test_cfg.get("max_per_image", 100), sorted=False)
            self._queries.append(((top // head.num_classes).cpu().numpy(), (top % head.num_classes).cpu().numpy()))
            return original(mask_cls, mask_pred)

        head.instance_postprocess = recorded

    def _test_pipeline(self) -> Any:
        from mmcv.transforms import Compose

        return Compose([
            {"type": "mmdet.LoadImageFromNDArray"},  # uint8, as 2.x's LoadImageFromFile (3.x's config: float32)
            {"type": "mmdet.Resize", "scale": SCALE, "keep_ratio": True},  # mmcv.imrescale, cv2 bilinear
            _Pad2x(),
            {"type": "Normalize", "mean": list(MMDET_MEAN), "std": list(MMDET_STD), "to_rgb": True},  # imnormalize
            {"type": "mmdet.PackDetInputs",
             "meta_keys": ("img_id", "img_path", "ori_shape", "img_shape", "scale_factor", "pad_shape")},
        ])

    def fingerprint(self) -> dict[str, Any]:
        import mmcv
        import mmdet

        self.load()  # the checkpoint's digest
        return {"detector": self.name, "label": self.label, "checkpoint_sha256": self.sha256,
                "mmdet": mmdet.__version__, "mmcv": mmcv.__version__, "pipeline": "mmdet-2.x test pipeline"}

    def detect_raw(self, images: list[Image.Image], min_score: float = 0.0) -> list[Instances]:
        """mmdet's top-100 per image (one ``inference_detector`` call each), sorted by score."""
        import numpy as np
        from mmdet.apis import inference_detector

        self.load()
        out = []
        for image in images:
            bgr = np.ascontiguousarray(to_rgb_array(image)[..., ::-1])
            self._queries.clear()
            pred = inference_detector(self.model, bgr, test_pipeline=self._pipeline).pred_instances
            ((queries, recorded_labels),) = self._queries
            labels = pred.labels.cpu().numpy()
            if not np.array_equal(labels, recorded_labels):
                raise RuntimeError("mmdet's detections and the recorded query indices disagree")
            scores = pred.scores.float().cpu().numpy()
            order = np.argsort(-scores, kind="stable")
            order = order[scores[order] > min_score] if min_score > 0 else order
            out.append(Instances(labels[order], queries[order], scores[order],
                                 pred.bboxes.float().cpu().numpy()[order], pred.masks.cpu().numpy()[order]))
        return out

    def detect(self, images: list[Image.Image], min_score: float = 0.0) -> list[dict[str, ClassDetections]]:
        """Detections per image, ``{class name: ClassDetections}``, rows in score order."""
        from harness.benchmarks.geneval.classes import CLASS_NAMES

        return [inst.to_detections(CLASS_NAMES) for inst in self.detect_raw(images, min_score)]
