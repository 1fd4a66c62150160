"""The mmdet 2.x → transformers key map of GenEval's official Mask2Former checkpoint, and its converter.

The official checkpoint is an mmdetection 2.x file (docs/geneval.md, 'Official checkpoint loader'). Every mmdet
key is either mapped to exactly one ``transformers.Mask2FormerForUniversalSegmentation`` key (q/k/v projections
split from mmdet's fused ``qkv``; Swin patch-merging weights re-ordered from mmdet's ``nn.Unfold`` channel order)
or is a derived buffer that is checked; any unexpected, missing or mis-shaped key is an error, never a silent
partial load. The inverse map writes a transformers model in the official layout (tests build checkpoints so).

Run as a program, this module converts a checkpoint once into a safetensors file of transformers keys, which
the detector then loads without unpickling or re-mapping anything::

    python -m harness.benchmarks.geneval.detectors.official.convert CHECKPOINT.pth OUT
    harness score ... --detector mask2former-official --detector-args weights=OUT.safetensors

The file records the source checkpoint's sha256, so results and the ``sha256=`` pin refer to the source.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.checkpoints import CheckpointError, key_examples, read_checkpoint
from harness.core.errors import HarnessError

if TYPE_CHECKING:
    import torch

OFFICIAL_NAME = "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco_20220504_001756-743b7d99.pth"
OFFICIAL_URL = ("https://download.openmmlab.com/mmdetection/v2.0/mask2former/"
                f"mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco/{OFFICIAL_NAME}")
#: OpenMMLab names each published checkpoint after the first 8 hex digits of its sha256 (publish_model.py);
#: that prefix is all the publisher pins, so it is what we check. The full digest is recorded in results.
OFFICIAL_SHA256_PREFIX = "743b7d99"
#: version of the key map and of the converted-file format; part of the detector's fingerprint
LOADER_VERSION = 1
#: transformers keys with no mmdet counterpart: Swin's final LayerNorm (computed, never used by the backbone
#: outputs) and the training loss's class weights. They keep their construction values.
HF_ONLY_KEYS = (
    "model.pixel_level_module.encoder.swin.layernorm.weight",
    "model.pixel_level_module.encoder.swin.layernorm.bias",
    "criterion.empty_weight",
)
#: what a converted file says it is (its safetensors metadata ``format``)
CONVERTED_FORMAT = "harness-mask2former-from-mmdet2"
CONVERTED_SUFFIX = ".safetensors"
#: this module's importable name (``__name__`` is ``__main__`` when it runs as a program)
PROGRAM = "harness.benchmarks.geneval.detectors.official.convert"


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


def convert_tensor(tensor: torch.Tensor, kind: str, key: str) -> torch.Tensor:
    """The transformers tensor a :class:`Rule` of ``kind`` makes from mmdet tensor ``tensor`` (named ``key``)."""
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


def unconvert_tensor(tensors: list[torch.Tensor], kind: str) -> torch.Tensor:
    """The inverse of :func:`convert_tensor`: the mmdet tensor from its transformers part(s) (``qkv``: q, k, v)."""
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
            parts.append(f"{len(missing)} missing key(s): {key_examples(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {key_examples(unexpected)}")
        raise CheckpointError(f"{where}: not the mmdet 2.x Mask2Former layout this loader reads ({'; '.join(parts)}); "
                              f"use the official {OFFICIAL_NAME}")
    for key, index in buffers.items():
        value = state[key]
        if tuple(value.shape) != tuple(index.shape) or not torch.equal(value.long(), index):
            raise CheckpointError(f"{where}: {key} differs from Swin's relative position index for window "
                                  f"{arch.window_size}; the checkpoint is corrupt or not a Swin model")
    return {r.hf: convert_tensor(state[r.mm], r.kind, r.mm) for r in rules}


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
        out[mm] = unconvert_tensor(tensors, slot["kind"]).clone().contiguous()
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
    from transformers import Mask2FormerConfig, SwinConfig

    from harness.benchmarks.geneval.classes import CLASS_NAMES

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


def mmdet2_arch(state: Mapping[str, Any], where: str = "checkpoint") -> Arch:
    """The architecture of an mmdet 2.x Mask2Former state dict; other layouts are refused with the fix."""
    layout = checkpoint_layout(set(state))
    if layout != "mmdet2":
        raise layout_error(layout, where)
    return infer_arch(state, where)


def load_mmdet2_state(state: Mapping[str, Any], where: str = "checkpoint", attention: str = "sdpa",
                      model: Any = None) -> tuple[Any, Arch]:
    """Build a transformers Mask2Former and load an mmdet 2.x state dict into it, strictly."""
    arch = mmdet2_arch(state, where)
    return load_hf_state(mmdet2_to_hf(state, arch, where), arch, where, attention, model, source=state), arch


def load_hf_state(mapped: dict[str, Any], arch: Arch, where: str = "checkpoint", attention: str = "sdpa",
                  model: Any = None, source: Mapping[str, Any] | None = None) -> Any:
    """Load mapped (transformers-key) tensors into a Mask2Former of ``arch`` (built if not given), strictly.

    Every tensor of the model must be filled except :data:`HF_ONLY_KEYS`, which keep their construction values;
    ``source`` (the mmdet state dict the tensors came from) names mmdet keys in shape errors.
    """
    if model is None:
        model = build_model(arch, attention)
    target = model.state_dict()
    missing = sorted(set(target) - set(mapped) - set(HF_ONLY_KEYS))
    extra = sorted(set(mapped) - set(target))
    if missing or extra:  # the key map and this transformers version disagree: never load partially
        raise CheckpointError(f"{where}: the installed transformers Mask2Former has {len(missing)} tensor(s) the "
                              f"key map does not fill ({key_examples(missing)}) and {len(extra)} it lacks "
                              f"({key_examples(extra)}); this transformers version is not supported by the loader")
    rules = {r.hf: r.mm for r in key_rules(arch)}
    shapes = [(f"{rules[k]} {tuple(source[rules[k]].shape)}" if source is not None else f"{tuple(mapped[k].shape)}")
              + f" -> {k} needs {tuple(target[k].shape)}"
              for k in mapped if tuple(mapped[k].shape) != tuple(target[k].shape)]
    if shapes:
        raise CheckpointError(f"{where}: {len(shapes)} mis-shaped tensor(s): {key_examples(shapes, 2)}")
    mapped = dict(mapped)
    for key in HF_ONLY_KEYS:
        mapped[key] = target[key]
    model.load_state_dict({k: v.float() for k, v in mapped.items()}, strict=True)
    return model.eval()


# ---- converted files: the mapped tensors once, as safetensors ------------------------------------------------


def is_converted(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a converted file (by its suffix; its metadata is checked when read)."""
    return str(path).lower().endswith(CONVERTED_SUFFIX)


def write_converted(state: Mapping[str, Any], out: str | os.PathLike, source_sha256: str,
                    where: str = "checkpoint") -> tuple[Path, Arch]:
    """Map an mmdet 2.x state dict and write it (atomically) as a safetensors file of transformers keys.

    The metadata records the format, the key map's version, the architecture and the source's sha256 (the
    digest the detector pins and fingerprints). Returns the written path (``.safetensors`` added if missing).
    """
    import torch
    from safetensors.torch import save

    from harness.core.fsio import atomic_write_bytes

    out = Path(out)
    if not is_converted(out):
        out = out.with_name(out.name + CONVERTED_SUFFIX)
    arch = mmdet2_arch(state, where)
    tensors = {k: v.clone(memory_format=torch.contiguous_format) for k, v in mmdet2_to_hf(state, arch, where).items()}
    metadata = {"format": CONVERTED_FORMAT, "loader": str(LOADER_VERSION), "arch": json.dumps(asdict(arch)),
                "source_sha256": source_sha256, "source_name": Path(where).name}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, save(tensors, metadata))
    return out, arch


def read_converted(path: str | os.PathLike) -> tuple[dict[str, Any], Arch, str]:
    """``(transformers-key tensors, arch, source sha256)`` of a file written by :func:`write_converted`."""
    with _open_converted(path) as (f, arch, digest):
        return {key: f.get_tensor(key) for key in f.keys()}, arch, digest  # noqa: SIM118 (not a dict)


def converted_source(path: str | os.PathLike) -> tuple[Arch, str]:
    """``(arch, source sha256)`` from a converted file's metadata alone (reads no tensor)."""
    with _open_converted(path) as (_, arch, digest):
        return arch, digest


@contextlib.contextmanager
def _open_converted(path: str | os.PathLike) -> Iterator[tuple[Any, Arch, str]]:
    """The open safetensors file with its checked metadata; any read error is one :class:`CheckpointError`."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    again = f"convert the checkpoint again: python -m {PROGRAM} CHECKPOINT {path.with_suffix('')}"
    if not path.is_file():
        raise CheckpointError(f"{path}: no such converted checkpoint; {again}")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != CONVERTED_FORMAT:
                raise CheckpointError(f"{path}: not a checkpoint converted by {PROGRAM} (its metadata has no "
                                      f"format={CONVERTED_FORMAT}); {again}")
            if meta.get("loader") != str(LOADER_VERSION):
                raise CheckpointError(f"{path}: converted with key map version {meta.get('loader')}, this is "
                                      f"version {LOADER_VERSION}; {again}")
            digest = str(meta.get("source_sha256", "")).lower()
            if not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise CheckpointError(f"{path}: its metadata has no source_sha256; {again}")
            try:
                fields = json.loads(meta.get("arch", ""))
                arch = Arch(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
            except (ValueError, TypeError, AttributeError) as exc:
                raise CheckpointError(f"{path}: unreadable arch in its metadata ({exc}); {again}") from None
            yield f, arch, digest
    except (SafetensorError, OSError, ValueError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise CheckpointError(f"{path}: truncated or corrupt safetensors file ({reason}); {again}") from None


# ---- command line --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m ...official.convert CHECKPOINT OUT``: convert once, print the file to pass as ``weights=``."""
    from harness.core.secrets import redact

    parser = argparse.ArgumentParser(
        prog=f"python -m {PROGRAM}",
        description="Convert an mmdet 2.x Mask2Former checkpoint (GenEval's official detector) into a safetensors "
                    "file of transformers keys, which --detector mask2former-official loads with weights=OUT.")
    parser.add_argument("checkpoint", help="the .pth file, 'official' (download the pinned file once) or a URL")
    parser.add_argument("out", help="the file to write (.safetensors is added if missing)")
    parser.add_argument("--sha256", default=OFFICIAL_SHA256_PREFIX,
                        help="hex digits the checkpoint's sha256 must start with (default: the official file's); "
                             "none skips the check")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow code in the checkpoint's pickle (only for files you trust)")
    args = parser.parse_args(argv)
    try:
        out = convert(args.checkpoint, args.out, args.sha256, trust_pickle=args.trust_pickle)
    except HarnessError as exc:
        print(f"error: {redact(exc)}", file=sys.stderr)
        return exc.exit_code
    print(f"wrote {out}; score with --detector mask2former-official --detector-args weights={out}")
    return 0


def convert(checkpoint: str, out: str | os.PathLike, sha256: Any = OFFICIAL_SHA256_PREFIX,
            trust_pickle: bool = False) -> Path:
    """Convert ``checkpoint`` (a path, ``official`` or a URL, checked against ``sha256``) into ``out``."""
    from harness.benchmarks.geneval.detectors.official.detector import resolve_checkpoint

    path, digest = resolve_checkpoint(checkpoint, sha256)
    if is_converted(path):
        raise HarnessError(f"{path}: already converted; pass it to the detector as weights={path}")
    state, _ = read_checkpoint(path, trust_pickle=trust_pickle, source=OFFICIAL_URL)
    written, _ = write_converted(state, out, digest, str(path))
    return written


if __name__ == "__main__":
    sys.exit(main())
