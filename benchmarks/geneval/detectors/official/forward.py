"""How the loaded model computes: the Swin backbone in mmdet's operation order, deformable attention in mmcv's.

transformers' Swin is the same function as mmdet's in another floating-point order, and the masked-attention
decoder amplifies the last-bit differences (docs/geneval.md, 'Why the Swin attention order matters').
:func:`use_mmdet_arithmetic` swaps in forwards that compute as mmdet does, so that on CPU the outputs equal
mmdet's bit for bit (tests/parity). :func:`strict_fp32` keeps TF32 out of CUDA float32 work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from harness.benchmarks.geneval.detectors.official.convert import unconvert_tensor

if TYPE_CHECKING:
    import torch

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
    ``selftest.msda_reference``; returns (B, Q, H * D).
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
            module.register_buffer("mmdet_norm_weight", unconvert_tensor([module.norm.weight.detach()], "unfold_n"),
                                   persistent=False)
            module.register_buffer("mmdet_norm_bias", unconvert_tensor([module.norm.bias.detach()], "unfold_n"),
                                   persistent=False)
            module.register_buffer("mmdet_reduction_weight",
                                   unconvert_tensor([module.reduction.weight.detach()], "unfold_w"), persistent=False)
            module.forward = types.MethodType(_mmdet_patch_merging, module)
    return model



@contextlib.contextmanager
def strict_fp32(device: str) -> Iterator[None]:
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

