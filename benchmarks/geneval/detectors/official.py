"""GenEval's official detector without mmcv: the mmdet 2.x Mask2Former Swin-S checkpoint, run by transformers.

Every published GenEval number comes from ``mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco_20220504_001756-
743b7d99.pth`` (mmdetection 2.x, geneval.md §2.1). This backend reads that file (mmdet 2.x key layout) into
``transformers.Mask2FormerForUniversalSegmentation`` through an explicit key map: every mmdet key is either
mapped to exactly one transformers key (q/k/v projections split from mmdet's fused ``qkv``; Swin patch-merging
weights re-ordered from mmdet's ``nn.Unfold`` channel order) or is a derived buffer that is checked; any
unexpected, missing or mis-shaped key is an error, never a silent partial load. Pre- and post-processing are
mmdet 2.x's (``detectors/base.py``): cv2 resize, pad 32 with 128, normalise, two-step mask upsampling, top-100
over (query × class), score = class prob × mean mask sigmoid, box = tight mask box. The Swin backbone runs in
mmdet's operation order (:func:`use_mmdet_arithmetic`), so on CPU the outputs equal mmdet's bit for bit
(``tests/parity``).

Before scoring, the multi-scale deformable attention of the loaded model runs on the scoring device (and
dtype, and compiled if asked) against an independent float64 gather-based reference on CPU; a disagreement
stops the run (mmcv's CUDA kernel is known to return garbage silently on unsupported GPUs, geneval.md §8).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from harness.benchmarks.geneval.detectors.base import Detector, Instances, preprocess, topk_instances
from harness.benchmarks.geneval.rules import ClassDetections

from harness.core import checkpoints
from harness.core.checkpoints import CheckpointError
from harness.core.datafiles import DataFile, sha256_file
from harness.core.errors import HarnessError

if TYPE_CHECKING:
    import torch
    from PIL import Image

OFFICIAL_NAME = "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco_20220504_001756-743b7d99.pth"
OFFICIAL_URL = ("https://download.openmmlab.com/mmdetection/v2.0/mask2former/"
                f"mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco/{OFFICIAL_NAME}")
#: OpenMMLab names each published checkpoint after the first 8 hex digits of its sha256 (publish_model.py);
#: that prefix is all the publisher pins, so it is what we check. The full digest is recorded in results.
OFFICIAL_SHA256_PREFIX = "743b7d99"
OFFICIAL_FILE = DataFile(OFFICIAL_NAME, OFFICIAL_URL, OFFICIAL_SHA256_PREFIX, "--detector-args weights")
OFFICIAL_LABEL = "GenEval (official detector)"
UNVERIFIED_LABEL = "GenEval (unverified mmdet 2.x checkpoint)"
LOADER_VERSION = 1
#: transformers keys with no mmdet counterpart: Swin's final LayerNorm (computed, never used by the backbone
#: outputs) and the training loss's class weights. They keep their construction values.
HF_ONLY_KEYS = (
    "model.pixel_level_module.encoder.swin.layernorm.weight",
    "model.pixel_level_module.encoder.swin.layernorm.bias",
    "criterion.empty_weight",
)


@dataclass(frozen=True)
class Arch:
    """The numbers that fix every tensor shape; defaults are mmdet's ``mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco``
    (swin-s → swin-t → r50 instance config chain: Swin-S backbone, MSDeformAttn pixel decoder with 6 layers,
    3 levels, 4 points, 8 heads, 9-layer masked-attention decoder, 100 queries, 80 thing classes)."""

    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    mlp_ratio: float = 4.0
    feat_channels: int = 256
    out_channels: int = 256
    encoder_layers: int = 6
    encoder_ffn: int = 1024
    decoder_layers: int = 9
    decoder_ffn: int = 2048
    attention_heads: int = 8
    num_queries: int = 100
    num_classes: int = 80


SWIN_S = Arch()


@dataclass(frozen=True)
class Rule:
    """transformers key ``hf`` comes from mmdet key ``mm`` by ``kind``: copy, q/k/v (a third of a fused
    projection), unfold_w / unfold_n (Swin patch merging, mmdet's nn.Unfold channel order)."""

    hf: str
    mm: str
    kind: str = "copy"


def key_rules(arch: Arch) -> list[Rule]:
    """The complete mmdet 2.x → transformers key map for ``arch`` (one rule per transformers tensor)."""
    rules: list[Rule] = []

    def add(hf: str, mm: str, kind: str = "copy") -> None:
        rules.append(Rule(hf, mm, kind))

    def wb(hf: str, mm: str, bias: bool = True) -> None:
        add(f"{hf}.weight", f"{mm}.weight")
        if bias:
            add(f"{hf}.bias", f"{mm}.bias")

    bb = "model.pixel_level_module.encoder."
    sw = f"{bb}swin."
    wb(f"{sw}embeddings.patch_embeddings.projection", "backbone.patch_embed.projection")
    wb(f"{sw}embeddings.norm", "backbone.patch_embed.norm")
    for i, depth in enumerate(arch.depths):
        for j in range(depth):
            h, m = f"{sw}encoder.layers.{i}.blocks.{j}.", f"backbone.stages.{i}.blocks.{j}."
            wb(f"{h}layernorm_before", f"{m}norm1")
            for part in "qkv":
                add(f"{h}attention.{part}_proj.weight", f"{m}attn.w_msa.qkv.weight", part)
                add(f"{h}attention.{part}_proj.bias", f"{m}attn.w_msa.qkv.bias", part)
            wb(f"{h}attention.o_proj", f"{m}attn.w_msa.proj")
            add(f"{h}attention.relative_position_bias.relative_position_bias_table",
                f"{m}attn.w_msa.relative_position_bias_table")
            wb(f"{h}layernorm_after", f"{m}norm2")
            wb(f"{h}mlp.fc1", f"{m}ffn.layers.0.0")
            wb(f"{h}mlp.fc2", f"{m}ffn.layers.1")
        if i < len(arch.depths) - 1:
            h, m = f"{sw}encoder.layers.{i}.downsample.", f"backbone.stages.{i}.downsample."
            add(f"{h}reduction.weight", f"{m}reduction.weight", "unfold_w")
            add(f"{h}norm.weight", f"{m}norm.weight", "unfold_n")
            add(f"{h}norm.bias", f"{m}norm.bias", "unfold_n")
        wb(f"{bb}hidden_states_norms.stage{i + 1}", f"backbone.norm{i}")

    pd, mp = "model.pixel_level_module.decoder.", "panoptic_head.pixel_decoder."
    for i in range(3):  # both lists run from the coarsest level (stride 32) to the finest encoder level
        wb(f"{pd}input_projections.{i}.0", f"{mp}input_convs.{i}.conv")
        wb(f"{pd}input_projections.{i}.1", f"{mp}input_convs.{i}.gn")
    for layer in range(arch.encoder_layers):
        h, m = f"{pd}encoder.layers.{layer}.", f"{mp}encoder.layers.{layer}."
        for name in ("sampling_offsets", "attention_weights", "value_proj", "output_proj"):
            wb(f"{h}self_attn.{name}", f"{m}attentions.0.{name}")
        wb(f"{h}self_attn_layer_norm", f"{m}norms.0")
        wb(f"{h}fc1", f"{m}ffns.0.layers.0.0")
        wb(f"{h}fc2", f"{m}ffns.0.layers.1")
        wb(f"{h}final_layer_norm", f"{m}norms.1")
    add(f"{pd}level_embed", f"{mp}level_encoding.weight")
    wb(f"{pd}adapter_1.0", f"{mp}lateral_convs.0.conv", bias=False)
    wb(f"{pd}adapter_1.1", f"{mp}lateral_convs.0.gn")
    wb(f"{pd}layer_1.0", f"{mp}output_convs.0.conv", bias=False)
    wb(f"{pd}layer_1.1", f"{mp}output_convs.0.gn")
    wb(f"{pd}mask_projection", f"{mp}mask_feature")

    tm, mh = "model.transformer_module.", "panoptic_head."
    add(f"{tm}queries_embedder.weight", f"{mh}query_embed.weight")
    add(f"{tm}queries_features.weight", f"{mh}query_feat.weight")
    add(f"{tm}level_embed.weight", f"{mh}level_embed.weight")
    for layer in range(arch.decoder_layers):
        # mmdet operation order: cross_attn (attentions.0), norm, self_attn (attentions.1), norm, ffn, norm
        h, m = f"{tm}decoder.layers.{layer}.", f"{mh}transformer_decoder.layers.{layer}."
        add(f"{h}cross_attn.in_proj_weight", f"{m}attentions.0.attn.in_proj_weight")
        add(f"{h}cross_attn.in_proj_bias", f"{m}attentions.0.attn.in_proj_bias")
        wb(f"{h}cross_attn.out_proj", f"{m}attentions.0.attn.out_proj")
        for part in "qkv":
            add(f"{h}self_attn.{part}_proj.weight", f"{m}attentions.1.attn.in_proj_weight", part)
            add(f"{h}self_attn.{part}_proj.bias", f"{m}attentions.1.attn.in_proj_bias", part)
        wb(f"{h}self_attn.out_proj", f"{m}attentions.1.attn.out_proj")
        wb(f"{h}cross_attn_layer_norm", f"{m}norms.0")
        wb(f"{h}self_attn_layer_norm", f"{m}norms.1")
        wb(f"{h}final_layer_norm", f"{m}norms.2")
        wb(f"{h}fc1", f"{m}ffns.0.layers.0.0")
        wb(f"{h}fc2", f"{m}ffns.0.layers.1")
    wb(f"{tm}decoder.layernorm", f"{mh}transformer_decoder.post_norm")
    for i, index in enumerate((0, 2, 4)):  # mmdet: Sequential(Linear, ReLU, Linear, ReLU, Linear)
        wb(f"{tm}decoder.mask_predictor.mask_embedder.{i}.0", f"{mh}mask_embed.{index}")
    wb("class_predictor", f"{mh}cls_embed")
    return rules


def relative_position_index(window: int) -> torch.Tensor:
    """mmdet's ``WindowMSA.relative_position_index`` (its ``double_step_seq`` construction), int64."""
    import torch

    seq1 = torch.arange(0, (2 * window - 1) * window, 2 * window - 1)
    seq2 = torch.arange(0, window, 1)
    coords = (seq1[:, None] + seq2[None, :]).reshape(1, -1)
    return (coords + coords.T).flip(1).contiguous()


def index_buffers(arch: Arch) -> dict[str, torch.Tensor]:
    """The derived buffers an mmdet 2.x Swin checkpoint stores: checked on load, rebuilt on export."""
    index = relative_position_index(arch.window_size)
    return {f"backbone.stages.{i}.blocks.{j}.attn.w_msa.relative_position_index": index
            for i, depth in enumerate(arch.depths) for j in range(depth)}


_UNFOLD = [0, 2, 1, 3]  # nn.Unfold's (row, col) kernel order vs transformers' [x0, x1, x2, x3] concat order


def _convert(tensor: torch.Tensor, kind: str, key: str) -> torch.Tensor:
    if kind == "copy":
        return tensor
    if kind in ("q", "k", "v"):
        if tensor.shape[0] % 3:
            raise CheckpointError(f"checkpoint key {key}: shape {tuple(tensor.shape)} is not a fused q/k/v "
                                  "projection (first dimension not divisible by 3)")
        size = tensor.shape[0] // 3
        start = "qkv".index(kind) * size
        return tensor[start:start + size]
    if kind == "unfold_w":
        out_dim, in_dim = tensor.shape
        return tensor.reshape(out_dim, in_dim // 4, 4)[:, :, _UNFOLD].permute(0, 2, 1).reshape(out_dim, in_dim)
    if kind == "unfold_n":
        (in_dim,) = tensor.shape
        return tensor.reshape(in_dim // 4, 4)[:, _UNFOLD].T.reshape(in_dim)
    raise ValueError(kind)


def _unconvert(tensors: list[torch.Tensor], kind: str) -> torch.Tensor:
    import torch

    if kind == "copy":
        return tensors[0]
    if kind == "qkv":
        return torch.cat(tensors, 0)
    if kind == "unfold_w":
        out_dim, in_dim = tensors[0].shape
        return tensors[0].reshape(out_dim, 4, in_dim // 4)[:, _UNFOLD, :].permute(0, 2, 1).reshape(out_dim, in_dim)
    if kind == "unfold_n":
        (in_dim,) = tensors[0].shape
        return tensors[0].reshape(4, in_dim // 4)[_UNFOLD, :].T.reshape(in_dim)
    raise ValueError(kind)


def _examples(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def mmdet2_to_hf(state: Mapping[str, torch.Tensor], arch: Arch, where: str = "checkpoint") -> dict[str, Any]:
    """Map an mmdet 2.x state dict to transformers keys; any missing or unexpected key is an error."""
    import torch

    rules = key_rules(arch)
    buffers = index_buffers(arch)
    expected = {r.mm for r in rules} | set(buffers)
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_examples(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_examples(unexpected)}")
        raise CheckpointError(f"{where}: not the mmdet 2.x Mask2Former layout this loader reads ({'; '.join(parts)}); "
                              f"use the official {OFFICIAL_NAME}")
    for key, index in buffers.items():
        value = state[key]
        if tuple(value.shape) != tuple(index.shape) or not torch.equal(value.long(), index):
            raise CheckpointError(f"{where}: {key} differs from Swin's relative position index for window "
                                  f"{arch.window_size}; the checkpoint is corrupt or not a Swin model")
    return {r.hf: _convert(state[r.mm], r.kind, r.mm) for r in rules}


def hf_to_mmdet2(state: Mapping[str, torch.Tensor], arch: Arch) -> dict[str, torch.Tensor]:
    """The inverse map: a transformers state dict written in the official mmdet 2.x key layout."""
    grouped: dict[str, dict[str, Any]] = {}
    for rule in key_rules(arch):
        kind = "qkv" if rule.kind in ("q", "k", "v") else rule.kind
        slot = grouped.setdefault(rule.mm, {"kind": kind, "parts": {}})
        slot["parts"][rule.kind] = state[rule.hf]
    out = {}
    for mm, slot in grouped.items():
        parts = slot["parts"]
        tensors = [parts[p] for p in "qkv"] if slot["kind"] == "qkv" else list(parts.values())
        out[mm] = _unconvert(tensors, slot["kind"]).clone().contiguous()
    out.update({k: v.clone() for k, v in index_buffers(arch).items()})
    return out


# mmdet 3.x renamed the transformer layers' submodules (its own 2.x → 3.x checkpoint converter does this)
def mmdet3_to_mmdet2(state: Mapping[str, Any]) -> dict[str, Any]:
    """mmdet 3.x Mask2Former keys → 2.x keys (``self_attn``/``cross_attn``/``ffn`` → ``attentions.N``/``ffns.0``)."""
    out = {}
    for key, value in state.items():
        new = key
        if ".pixel_decoder.encoder.layers." in new:
            new = new.replace(".self_attn.", ".attentions.0.")
        if ".transformer_decoder.layers." in new:
            new = new.replace(".cross_attn.", ".attentions.0.").replace(".self_attn.", ".attentions.1.")
        new = new.replace(".ffn.", ".ffns.0.") if ("panoptic_head." in new and ".ffn." in new) else new
        out[new] = value
    return out


def mmdet2_to_mmdet3(state: Mapping[str, Any]) -> dict[str, Any]:
    """mmdet 2.x Mask2Former keys → 3.x keys (the rename mmdet 3.x's converter applies)."""
    out = {}
    for key, value in state.items():
        new = key
        if ".pixel_decoder.encoder.layers." in new:
            new = new.replace(".attentions.0.", ".self_attn.")
        if ".transformer_decoder.layers." in new:
            new = new.replace(".attentions.0.", ".cross_attn.").replace(".attentions.1.", ".self_attn.")
        new = new.replace(".ffns.0.", ".ffn.") if "panoptic_head." in new else new
        out[new] = value
    return out


def checkpoint_layout(keys: set[str] | list[str]) -> str:
    """``mmdet2``, ``mmdet3``, ``transformers``, ``detectron2`` or ``unknown``, from the key names alone."""
    keys = set(keys)
    if any(k.startswith("panoptic_head.") for k in keys):
        renamed = any((".transformer_decoder.layers." in k or ".pixel_decoder.encoder.layers." in k)
                      and (".self_attn." in k or ".cross_attn." in k) for k in keys)
        return "mmdet3" if renamed else "mmdet2"
    if any(k.startswith(("model.pixel_level_module.", "pixel_level_module.")) for k in keys):
        return "transformers"
    if any(k.startswith("sem_seg_head.") for k in keys):
        return "detectron2"
    return "unknown"


def _count(keys: set[str], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in keys if (m := rx.match(k))})


def infer_arch(state: Mapping[str, torch.Tensor], where: str = "checkpoint") -> Arch:
    """Read the architecture numbers off the tensor shapes (the full key map then checks every tensor)."""
    keys = set(state)
    try:
        embed = state["backbone.patch_embed.projection.weight"].shape[0]
        stages = _count(keys, r"backbone\.stages\.(\d+)\.")
        depths = tuple(_count(keys, rf"backbone\.stages\.{i}\.blocks\.(\d+)\.") for i in range(stages))
        tables = [state[f"backbone.stages.{i}.blocks.0.attn.w_msa.relative_position_bias_table"] for i in range(stages)]
        window = (round(tables[0].shape[0] ** 0.5) + 1) // 2
        hidden = state["backbone.stages.0.blocks.0.ffn.layers.0.0.weight"].shape[0]
        mp = "panoptic_head.pixel_decoder."
        offsets = state[f"{mp}encoder.layers.0.attentions.0.sampling_offsets.weight"].shape[0]
        arch = Arch(
            embed_dim=embed, depths=depths, num_heads=tuple(t.shape[1] for t in tables), window_size=window,
            mlp_ratio=hidden / embed,
            feat_channels=state[f"{mp}input_convs.0.conv.weight"].shape[0],
            out_channels=state[f"{mp}mask_feature.weight"].shape[0],
            encoder_layers=_count(keys, rf"{re.escape(mp)}encoder\.layers\.(\d+)\."),
            encoder_ffn=state[f"{mp}encoder.layers.0.ffns.0.layers.0.0.weight"].shape[0],
            decoder_layers=_count(keys, r"panoptic_head\.transformer_decoder\.layers\.(\d+)\."),
            decoder_ffn=state["panoptic_head.transformer_decoder.layers.0.ffns.0.layers.0.0.weight"].shape[0],
            attention_heads=offsets // (3 * 4 * 2),  # heads x 3 levels x 4 points x (x, y)
            num_queries=state["panoptic_head.query_feat.weight"].shape[0],
            num_classes=state["panoptic_head.cls_embed.weight"].shape[0] - 1,
        )
    except (KeyError, IndexError, AttributeError) as exc:
        raise CheckpointError(f"{where}: not a Swin Mask2Former in mmdet 2.x layout (no {exc}); use the official "
                              f"{OFFICIAL_NAME}") from None
    if arch.num_classes == 133:
        raise CheckpointError(f"{where}: this is the COCO *panoptic* Mask2Former (133 classes, e.g. the "
                              "…20220329… file); GenEval uses the 80-class instance model "
                              f"{OFFICIAL_NAME}")
    if arch.num_classes != 80:
        raise CheckpointError(f"{where}: detector has {arch.num_classes} classes; GenEval needs the 80 COCO thing "
                              f"classes (the instance model {OFFICIAL_NAME})")
    return arch


def mask2former_config(arch: Arch, attention: str = "sdpa") -> Any:
    """A transformers ``Mask2FormerConfig`` for ``arch``, built in code (no hub)."""
    from harness.benchmarks.geneval.classes import CLASS_NAMES
    from transformers import Mask2FormerConfig, SwinConfig

    backbone = SwinConfig(
        image_size=224, patch_size=4, embed_dim=arch.embed_dim, depths=list(arch.depths),
        num_heads=list(arch.num_heads), window_size=arch.window_size, mlp_ratio=arch.mlp_ratio, qkv_bias=True,
        hidden_act="gelu", layer_norm_eps=1e-5, drop_path_rate=0.0, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, use_absolute_embeddings=False,
        out_features=[f"stage{i + 1}" for i in range(len(arch.depths))],
    )
    backbone._attn_implementation = attention
    names = dict(enumerate(CLASS_NAMES)) if arch.num_classes == len(CLASS_NAMES) else None
    config = Mask2FormerConfig(
        backbone_config=backbone, feature_size=arch.feat_channels, mask_feature_size=arch.out_channels,
        hidden_dim=arch.feat_channels, encoder_feedforward_dim=arch.encoder_ffn, encoder_layers=arch.encoder_layers,
        decoder_layers=arch.decoder_layers + 1,  # transformers counts the initial prediction as a layer
        dim_feedforward=arch.decoder_ffn, num_attention_heads=arch.attention_heads, num_queries=arch.num_queries,
        pre_norm=False, enforce_input_projection=False, common_stride=4, feature_strides=[4, 8, 16, 32],
        dropout=0.0, num_labels=arch.num_classes, **({"id2label": names} if names else {}),
    )
    return config


def build_model(arch: Arch, attention: str = "sdpa", seed: int | None = None) -> Any:
    """A transformers Mask2Former of ``arch`` (random weights; ``seed`` makes them reproducible)."""
    import torch
    import transformers
    from transformers import Mask2FormerForUniversalSegmentation

    transformers.utils.logging.disable_progress_bar()
    if seed is not None:
        torch.manual_seed(seed)
    return Mask2FormerForUniversalSegmentation(mask2former_config(arch, attention)).eval()


def read_checkpoint(path: str | os.PathLike, trust_pickle: bool = False, *,
                    fix: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`harness.core.checkpoints.read_checkpoint` with the official detector's advice."""
    return checkpoints.read_checkpoint(path, trust_pickle, fix=fix, missing=" (--detector-args weights=PATH)",
                                       untrusted="if you trust it, pass --detector-args trust_pickle=true",
                                       corrupt=f"download it again ({OFFICIAL_URL})")


def layout_error(layout: str, where: str) -> CheckpointError:
    """The one-line explanation for a checkpoint in a layout the 2.x loader does not read."""
    fixes = {
        "mmdet3": "an mmdet 3.x checkpoint (e.g. the converted …_8xb2-lsj-50e_coco_20220504_001756-c9d0c4f2.pth); "
                  "GenEval's official detector is the mmdet 2.x file",
        "transformers": "a transformers Mask2Former state dict; use --detector mask2former-hf for those, or the "
                        "official mmdet 2.x file",
        "detectron2": "a Detectron2/FAIR Mask2Former checkpoint (different weights); the official detector is the "
                      "mmdet 2.x file",
        "unknown": "not a Mask2Former checkpoint in mmdet layout",
    }
    return CheckpointError(f"{where}: {fixes[layout]} {OFFICIAL_NAME} ({OFFICIAL_URL})")


def load_mmdet2_state(state: Mapping[str, Any], where: str = "checkpoint", attention: str = "sdpa",
                      model: Any = None) -> tuple[Any, Arch]:
    """Build a transformers Mask2Former and load an mmdet 2.x state dict into it, strictly."""
    layout = checkpoint_layout(set(state))
    if layout != "mmdet2":
        raise layout_error(layout, where)
    arch = infer_arch(state, where)
    mapped = mmdet2_to_hf(state, arch, where)
    if model is None:
        model = build_model(arch, attention)
    target = model.state_dict()
    missing = sorted(set(target) - set(mapped) - set(HF_ONLY_KEYS))
    extra = sorted(set(mapped) - set(target))
    if missing or extra:  # the key map and this transformers version disagree: never load partially
        raise CheckpointError(f"{where}: the installed transformers Mask2Former has {len(missing)} tensor(s) the "
                              f"key map does not fill ({_examples(missing)}) and {len(extra)} it lacks "
                              f"({_examples(extra)}); this transformers version is not supported by the loader")
    rules = {r.hf: r.mm for r in key_rules(arch)}
    shapes = [f"{rules[k]} {tuple(state[rules[k]].shape)} -> {k} needs {tuple(target[k].shape)}"
              for k in mapped if tuple(mapped[k].shape) != tuple(target[k].shape)]
    if shapes:
        raise CheckpointError(f"{where}: {len(shapes)} mis-shaped tensor(s): {_examples(shapes, 2)}")
    for key in HF_ONLY_KEYS:
        mapped[key] = target[key]
    model.load_state_dict({k: v.float() for k, v in mapped.items()}, strict=True)
    return model.eval(), arch


# ---- mmdet's arithmetic in the Swin backbone ----------------------------------------------------------------------


def _mmdet_window_attention(self: Any, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                            **kwargs: Any) -> tuple[torch.Tensor, None]:
    """mmdet's ``WindowMSA.forward``: one fused qkv matmul, q scaled before q·kᵀ, then + bias, then + mask."""
    import torch.nn.functional as F

    windows, tokens, channels = hidden_states.shape
    heads = self.num_attention_heads
    qkv = F.linear(hidden_states, self.mmdet_qkv_weight, self.mmdet_qkv_bias)
    qkv = qkv.reshape(windows, tokens, 3, heads, channels // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = (q * self.scaling) @ k.transpose(-2, -1)
    rpb = self.relative_position_bias
    bias = rpb.relative_position_bias_table[rpb.relative_position_index].view(tokens, tokens, -1)
    attn = attn + bias.permute(2, 0, 1).contiguous().unsqueeze(0)
    if attention_mask is not None:
        n = attention_mask.shape[0]
        attn = attn.view(windows // n, n, heads, tokens, tokens) + attention_mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, heads, tokens, tokens)
    x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(windows, tokens, channels)
    return self.o_proj(x), None


def _mmdet_patch_merging(self: Any, input_feature: torch.Tensor, input_dimensions: tuple[int, int]) -> torch.Tensor:
    """mmdet's ``PatchMerging``: corner padding, ``nn.Unfold(2, stride 2)`` channel order, LayerNorm, Linear."""
    import torch.nn.functional as F

    height, width = input_dimensions
    batch, _, channels = input_feature.shape
    x = input_feature.view(batch, height, width, channels).permute(0, 3, 1, 2)
    if height % 2 or width % 2:
        x = F.pad(x, (0, width % 2, 0, height % 2))
    x = F.unfold(x, kernel_size=2, stride=2).transpose(1, 2)
    x = F.layer_norm(x, (4 * channels,), self.mmdet_norm_weight, self.mmdet_norm_bias, self.norm.eps)
    return F.linear(x, self.mmdet_reduction_weight)


def msda_fast(value: torch.Tensor, shapes: list[tuple[int, int]], locations: torch.Tensor,
              weights: torch.Tensor) -> torch.Tensor:
    """mmcv's ``multi_scale_deformable_attn_pytorch`` (which transformers copies), bit for bit, with less traffic.

    Same operations in the same order — per-level ``grid_sample`` (bilinear, zeros, align_corners=False), stack,
    weight, sum — but each level's values are laid out channels-last (``grid_sample`` gathers all channels of a
    corner from one place: same arithmetic, ~25% faster on CPU) and the weighting is in place. Shapes as
    :func:`msda_reference`; returns (B, Q, H * D).
    """
    import torch
    import torch.nn.functional as F

    batch, _, heads, dim = value.shape
    queries, levels, points = locations.shape[1], locations.shape[3], locations.shape[4]
    grids = 2 * locations - 1
    sampled = []
    start = 0
    for level, (height, width) in enumerate(shapes):
        v = value[:, start:start + height * width]  # (B, HW, heads, D)
        start += height * width
        v = v.permute(0, 2, 1, 3).reshape(batch * heads, height, width, dim).permute(0, 3, 1, 2)  # NCHW view, NHWC
        grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(v, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    weights = weights.transpose(1, 2).reshape(batch * heads, 1, queries, levels * points)
    out = torch.stack(sampled, dim=-2).flatten(-2).mul_(weights).sum(-1)
    return out.view(batch, heads * dim, queries).transpose(1, 2).contiguous()


def _msda_forward(self: Any, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                  encoder_hidden_states: torch.Tensor | None = None, encoder_attention_mask: Any = None,
                  position_embeddings: torch.Tensor | None = None, reference_points: torch.Tensor | None = None,
                  spatial_shapes_list: list[tuple[int, int]] | None = None, level_start_index: Any = None,
                  output_attentions: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' (and mmcv's) deformable-attention module forward, with :func:`msda_fast` as its kernel."""
    import torch
    import torch.nn.functional as F

    if position_embeddings is not None:
        hidden_states = hidden_states + position_embeddings
    batch, queries, _ = hidden_states.shape
    tokens = encoder_hidden_states.shape[1]
    value = self.value_proj(encoder_hidden_states)
    if attention_mask is not None:
        value = value.masked_fill(attention_mask[..., None], 0.0)
    value = value.view(batch, tokens, self.n_heads, self.d_model // self.n_heads)
    offsets = self.sampling_offsets(hidden_states).view(batch, queries, self.n_heads, self.n_levels, self.n_points, 2)
    weights = self.attention_weights(hidden_states).view(batch, queries, self.n_heads, self.n_levels * self.n_points)
    weights = F.softmax(weights, -1).view(batch, queries, self.n_heads, self.n_levels, self.n_points)
    normalizer = torch.tensor([[w, h] for h, w in spatial_shapes_list], dtype=torch.long,
                              device=reference_points.device)
    locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
    return self.output_proj(msda_fast(value, spatial_shapes_list, locations, weights)), weights


def use_mmdet_arithmetic(model: Any) -> Any:
    """Make the Swin backbone compute exactly as mmdet's does (same operations in the same order), and run the
    pixel decoder's deformable attention through :func:`msda_fast` (mmcv's arithmetic, faster memory layout).

    transformers' Swin is the same function, but splits qkv into three matmuls, scales after q·kᵀ, adds bias and
    mask as one tensor and concatenates patch-merging channels in another order: each differs from mmdet in the
    last float bit, which the masked-attention decoder then amplifies (up to ~5e-5 in scores on random weights).
    With these forwards our outputs equal mmdet's bit for bit on CPU (see tests/parity). Weights stay in
    transformers' layout; fused/re-ordered copies are kept as non-persistent buffers (not in the state dict).
    """
    import types

    import torch
    from transformers.models.mask2former.modeling_mask2former import (
        Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention as DeformableAttention,
    )
    from transformers.models.swin.modeling_swin import SwinAttention, SwinPatchMerging

    for module in model.modules():
        if isinstance(module, DeformableAttention):
            module.forward = types.MethodType(_msda_forward, module)
        elif isinstance(module, SwinAttention):
            weight = torch.cat([module.q_proj.weight, module.k_proj.weight, module.v_proj.weight]).detach()
            bias = torch.cat([module.q_proj.bias, module.k_proj.bias, module.v_proj.bias]).detach()
            module.register_buffer("mmdet_qkv_weight", weight.clone(), persistent=False)
            module.register_buffer("mmdet_qkv_bias", bias.clone(), persistent=False)
            module.forward = types.MethodType(_mmdet_window_attention, module)
        elif isinstance(module, SwinPatchMerging):
            module.register_buffer("mmdet_norm_weight", _unconvert([module.norm.weight.detach()], "unfold_n"),
                                   persistent=False)
            module.register_buffer("mmdet_norm_bias", _unconvert([module.norm.bias.detach()], "unfold_n"),
                                   persistent=False)
            module.register_buffer("mmdet_reduction_weight",
                                   _unconvert([module.reduction.weight.detach()], "unfold_w"), persistent=False)
            module.forward = types.MethodType(_mmdet_patch_merging, module)
    return model


def reuse_freed_memory(enabled: bool = True) -> bool:
    """Ask glibc to keep freed memory for reuse instead of returning it to the OS (process-wide, Linux only).

    The pixel decoder allocates and frees tensors of ~160 MB per layer (deformable-attention samples); glibc serves
    each from a fresh mmap, so every forward pays ~40k page faults per tensor: about 3.5 CPU-seconds of kernel time
    per 800² image on this CPU, a quarter of the detector's wall time. With mmap disabled and a 1 GiB trim threshold
    the same memory is reused. Numbers are unchanged (only where memory comes from); the process keeps its peak
    memory (plus fragmentation) while this is on. ``enabled=False`` restores glibc's defaults. Returns whether the
    settings took effect.
    """
    import ctypes
    import platform

    if platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    if enabled:
        return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 1 << 30))
    done = bool(mallopt(m_mmap_max, 65536)) and bool(mallopt(m_trim_threshold, 128 * 1024))
    with contextlib.suppress(AttributeError):
        libc.malloc_trim(0)
    return done


# ---- multi-scale deformable attention self-test ---------------------------------------------------------------


def msda_reference(value: torch.Tensor, shapes: list[tuple[int, int]], locations: torch.Tensor,
                   weights: torch.Tensor) -> torch.Tensor:
    """Multi-scale deformable attention by explicit bilinear gathers in float64 (no grid_sample).

    ``value`` (B, S, H, D); ``locations`` (B, Q, H, L, P, 2) in [0, 1] (x, y); ``weights`` (B, Q, H, L, P).
    Sampling follows ``grid_sample(align_corners=False, padding_mode="zeros")``: pixel = loc * size - 0.5.
    Returns (B, Q, H * D).
    """
    import torch

    value, locations, weights = value.double(), locations.double(), weights.double()
    batch, _, heads, dim = value.shape
    queries = locations.shape[1]
    out = torch.zeros(batch, queries, heads, dim, dtype=torch.float64)
    b_idx = torch.arange(batch)[:, None, None, None]
    h_idx = torch.arange(heads)[None, None, :, None]
    start = 0
    for level, (height, width) in enumerate(shapes):
        v = value[:, start:start + height * width].reshape(batch, height, width, heads, dim)
        start += height * width
        x = locations[:, :, :, level, :, 0] * width - 0.5
        y = locations[:, :, :, level, :, 1] * height - 0.5
        x0, y0 = torch.floor(x), torch.floor(y)
        fx, fy = x - x0, y - y0
        for dy, dx, corner in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                               (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi <= width - 1) & (yi >= 0) & (yi <= height - 1)
            sampled = v[b_idx, yi.clamp(0, height - 1).long(), xi.clamp(0, width - 1).long(), h_idx]
            w = corner * inside * weights[:, :, :, level, :]
            out += (sampled * w[..., None]).sum(3)
    return out.reshape(batch, queries, heads * dim)


def _msda_module_reference(module: Any, hidden: torch.Tensor, pos: torch.Tensor, ref: torch.Tensor,
                           shapes: list[tuple[int, int]]) -> torch.Tensor:
    """The deformable-attention module's forward recomputed in float64 on CPU around :func:`msda_reference`."""
    import torch
    import torch.nn.functional as F

    def linear(layer: Any, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, layer.weight.detach().double().cpu(), layer.bias.detach().double().cpu())

    hidden, pos, ref = hidden.double(), pos.double(), ref.double()
    batch, queries, _ = hidden.shape
    heads, levels, points = module.n_heads, module.n_levels, module.n_points
    query = hidden + pos
    value = linear(module.value_proj, hidden).view(batch, queries, heads, -1)
    offsets = linear(module.sampling_offsets, query).view(batch, queries, heads, levels, points, 2)
    weights = linear(module.attention_weights, query).view(batch, queries, heads, levels * points)
    weights = weights.softmax(-1).view(batch, queries, heads, levels, points)
    normalizer = torch.tensor([[w, h] for h, w in shapes], dtype=torch.float64)
    locations = ref[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
    return linear(module.output_proj, msda_reference(value, shapes, locations, weights))


def deformable_attention_selftest(model: Any, device: str, autocast_dtype: Any = None, compiled: bool = False,
                                  seed: int = 0) -> tuple[float, float]:
    """Run encoder layer 0's deformable attention (real weights) on ``device`` — in ``autocast_dtype`` and
    compiled when asked, as scoring will — and on the float64 CPU reference; return (relative error, tolerance).
    """
    import torch

    module = model.model.pixel_level_module.decoder.encoder.layers[0].self_attn
    shapes = [(5, 7), (3, 4), (2, 2)][: module.n_levels]
    tokens = sum(h * w for h, w in shapes)
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2, tokens, module.d_model, generator=gen)
    pos = torch.randn(2, tokens, module.d_model, generator=gen)
    ref = torch.rand(2, tokens, module.n_levels, 2, generator=gen) * 1.2 - 0.1  # some samples fall off the map
    level_start = torch.tensor([0, *[h * w for h, w in shapes][:-1]]).cumsum(0)
    expected = _msda_module_reference(module, hidden, pos, ref, shapes)

    def run(h: torch.Tensor, p: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return module(hidden_states=h, attention_mask=None, encoder_hidden_states=h, position_embeddings=p,
                      reference_points=r, spatial_shapes_list=shapes, level_start_index=level_start.to(h.device))[0]

    fn = torch.compile(run, dynamic=False) if compiled else run
    autocast = (torch.autocast(device_type=device.split(":")[0], dtype=autocast_dtype) if autocast_dtype is not None
                else contextlib.nullcontext())
    with torch.inference_mode(), autocast, _strict_fp32(device):
        got = fn(hidden.to(device), pos.to(device), ref.to(device)).float().cpu().double()
    error = float((got - expected).abs().max() / expected.abs().max().clamp_min(1e-12))
    tolerance = 1e-4 if autocast_dtype is None else 3e-2
    return error, tolerance


@contextlib.contextmanager
def _strict_fp32(device: str) -> Iterator[None]:
    """No TF32 in convolutions/matmuls on CUDA (cuDNN allows it by default): fp32 parity needs real fp32."""
    import torch

    if not str(device).startswith("cuda"):
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


# ---- the detector ------------------------------------------------------------------------------------------------


def _hex_digest_option(value: Any) -> str | None:
    if value is None or str(value).lower() in ("none", "off", "false", ""):
        return None
    text = str(value).lower()
    if not re.fullmatch(r"[0-9a-f]{8,64}", text):
        raise HarnessError(f"--detector-args sha256={value!r}: give 8 to 64 hex digits of the file's sha256, or "
                           "sha256=none to skip the check (results are then labelled unverified)")
    return text


def resolve_checkpoint(weights: Any, sha256: Any) -> tuple[Path, str]:
    """``(path, full sha256)`` for ``weights`` (``official``, a URL or a path), checked against ``sha256``.

    ``official`` downloads the pinned URL once into the harness cache (offline: pass a path). ``sha256`` is the
    hex digest or a prefix of 8+ digits the file must have (default: the official file's); ``None`` skips it.
    """
    from harness.core.datafiles import fetch

    expected = _hex_digest_option(sha256)
    weights = str(weights)
    if weights == "official":
        path = fetch(OFFICIAL_FILE)
    elif weights.startswith(("http://", "https://")):
        if expected is None:
            raise HarnessError(f"--detector-args weights={weights}: a URL needs sha256=HEX (its digest or the "
                               "first 8+ hex digits) so that the download can be checked")
        name = weights.rstrip("/").rsplit("/", 1)[-1] or "checkpoint.pth"
        path = fetch(DataFile(name, weights, expected, "--detector-args weights"))
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise HarnessError(f"--detector-args weights={weights}: no such file; pass the official {OFFICIAL_NAME} "
                               "(or weights=official to download it)")
    digest = sha256_file(path)
    if expected is not None and not digest.startswith(expected):
        what = f"the official {OFFICIAL_NAME}" if expected == OFFICIAL_SHA256_PREFIX else "pinned"
        raise HarnessError(f"{path}: sha256 mismatch: expected {expected}… ({what}), got {digest}; download it "
                           "again, or pass sha256=none for another mmdet 2.x checkpoint (results are then labelled "
                           "unverified)")
    return path, digest


def results_label(digest: str, arch: Arch, autocast_dtype: Any = None) -> str:
    """``GenEval (official detector)`` only for the official file's digest and the Swin-S shapes."""
    label = OFFICIAL_LABEL if digest.startswith(OFFICIAL_SHA256_PREFIX) and arch == SWIN_S else UNVERIFIED_LABEL
    if autocast_dtype is not None:
        label += f" [{str(autocast_dtype).removeprefix('torch.')} autocast]"
    return label


class OfficialMask2Former(Detector):
    """GenEval's official mmdet 2.x checkpoint in transformers' Mask2Former, mmdet 2.x pre/post-processing."""

    name: ClassVar[str] = "mask2former-official"
    label: ClassVar[str] = OFFICIAL_LABEL
    defaults: ClassVar[dict[str, Any]] = {
        "weights": "official",  # the pinned URL (downloaded once, cached), or a local .pth path
        "sha256": OFFICIAL_SHA256_PREFIX,  # hex digits the file's sha256 must start with; none = skip (unverified)
        "device": "auto",
        "dtype": "float32",  # float16/bfloat16: CUDA autocast only; labelled, never mixed with fp32 numbers
        "compile": False,  # torch.compile the model (and self-test the compiled deformable attention)
        "attention": "mmdet",  # Swin arithmetic: mmdet (bit-identical to mmdet on CPU), sdpa or eager (~1e-6 apart)
        "batch": "auto",  # images per forward: 1 on CPU (batching is slower there), 8 on GPU
        "trust_pickle": False,  # allow code in the checkpoint's pickle (only for files you trust)
        "reuse_memory": "auto",  # CPU: keep freed memory for reuse (glibc mallopt), see reuse_freed_memory()
        "scale": "1333x800",  # mmdet Resize(img_scale=(1333, 800)); only change it for experiments
    }

    def __init__(self, **options: Any):
        import torch

        from harness.core.torchenv import resolve_device, resolve_dtype

        self.options = self.check_options(options)
        self.device = resolve_device(self.options["device"])
        dtype = resolve_dtype(self.options["dtype"], self.device)
        if dtype != torch.float32 and not self.device.startswith("cuda"):
            raise HarnessError(f"--detector-args dtype={self.options['dtype']}: half precision is for CUDA only; "
                               "on CPU the official detector runs in float32 (its parity with mmdet is fp32)")
        self.autocast_dtype = None if dtype == torch.float32 else dtype
        if self.options["attention"] not in ("mmdet", "sdpa", "eager"):
            raise HarnessError(f"--detector-args attention={self.options['attention']!r}: use mmdet, sdpa or eager")
        long_side, _, short_side = str(self.options["scale"]).partition("x")
        self.scale = (int(long_side), int(short_side or long_side))
        batch = self.options["batch"]
        self.batch = (8 if self.device.startswith("cuda") else 1) if batch == "auto" else int(batch)
        path, self.sha256 = resolve_checkpoint(self.options["weights"], self.options["sha256"])
        state, _ = read_checkpoint(path, trust_pickle=bool(self.options["trust_pickle"]))
        attention = self.options["attention"]
        self.model, self.arch = load_mmdet2_state(state, str(path), "eager" if attention == "mmdet" else attention)
        del state
        if attention == "mmdet":
            use_mmdet_arithmetic(self.model)
        self.label = results_label(self.sha256, self.arch, self.autocast_dtype)  # type: ignore[misc]
        if self.scale != (1333, 800):  # an experiment, not the official pipeline: never mixed with it
            self.label += f" [scale {self.scale[0]}x{self.scale[1]}]"  # type: ignore[misc]
        self.weights = str(path)
        self.model.to(self.device)
        error, tolerance = deformable_attention_selftest(self.model, self.device, self.autocast_dtype,
                                                         bool(self.options["compile"]))
        if not error <= tolerance:  # also catches NaN
            raise HarnessError(
                f"detector self-test failed: multi-scale deformable attention on {self.device} "
                f"({'compiled, ' if self.options['compile'] else ''}{self.options['dtype']}) differs from the float64 "
                f"reference by {error:.2e} (relative; tolerance {tolerance:.0e}); refusing to score with a broken "
                "kernel. Try device=cpu, dtype=float32 or compile=false, and report your torch/GPU versions.")
        self.selftest_error = error
        reuse = self.options["reuse_memory"]
        self.reuses_memory = (reuse_freed_memory() if (reuse is True or (reuse == "auto" and self.device == "cpu"))
                              else False)
        self._forward = torch.compile(self.model, dynamic=False) if self.options["compile"] else self.model

    def fingerprint(self) -> dict[str, Any]:
        return {"detector": self.name, "label": self.label, "checkpoint_sha256": self.sha256,
                "arch": asdict(self.arch), "loader": LOADER_VERSION, "scale": list(self.scale), "resize": "cv2",
                "dtype": str(self.autocast_dtype or "torch.float32"), "attention": self.options["attention"],
                "compile": bool(self.options["compile"])}

    def _autocast(self) -> Any:
        import torch

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.autocast_dtype)

    def detect_raw(self, images: list[Image.Image], min_score: float = 0.0) -> list[Instances]:
        """The top-100 (query, class) instances of each image; same-size images share forward passes."""
        import torch

        results: list[Instances | None] = [None] * len(images)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(image.size, []).append(i)
        for (width, height), idx in by_size.items():
            for start in range(0, len(idx), self.batch):
                chunk = idx[start:start + self.batch]
                prepared = [preprocess(images[i], "cpu", torch.float32, self.scale, resize="cv2") for i in chunk]
                pixels = torch.stack([p[0] for p in prepared]).to(self.device)
                with torch.inference_mode(), self._autocast(), _strict_fp32(self.device):
                    out = self._forward(pixel_values=pixels)
                    for j, i in enumerate(chunk):
                        results[i] = topk_instances(out.class_queries_logits[j].float(),
                                                    out.masks_queries_logits[j].float(), prepared[j][1],
                                                    (height, width), min_score)
        return [r for r in results if r is not None]

    def detect(self, images: list[Image.Image], min_score: float = 0.0) -> list[dict[str, ClassDetections]]:
        """Detections per image in mmdet 2.x order; pairs with class prob <= ``min_score`` are skipped."""
        from harness.benchmarks.geneval.classes import CLASS_NAMES

        return [inst.to_detections(CLASS_NAMES) for inst in self.detect_raw(images, min_score)]

