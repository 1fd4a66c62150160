"""The deformable-attention self-test: the loaded model's multi-scale deformable attention, on the scoring device,
against an independent float64 reference on CPU.

mmcv's CUDA kernel is known to return garbage, without an error, on GPUs it was not compiled for; detections then
collapse to near-zero confidence (docs/geneval.md, 'Deformable-attention self-test'). :func:`check_deformable_attention`
runs before any scoring and stops the run on a disagreement.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from harness.benchmarks.geneval.detectors.official.forward import strict_fp32
from harness.core.errors import HarnessError

if TYPE_CHECKING:
    import torch


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
    with torch.inference_mode(), autocast, strict_fp32(device):
        got = fn(hidden.to(device), pos.to(device), ref.to(device)).float().cpu().double()
    error = float((got - expected).abs().max() / expected.abs().max().clamp_min(1e-12))
    tolerance = 1e-4 if autocast_dtype is None else 3e-2
    return error, tolerance



def check_deformable_attention(model: Any, device: str, autocast_dtype: Any = None, compiled: bool = False,
                               dtype_name: str = "float32") -> float:
    """:func:`deformable_attention_selftest`, or one line refusing to score (also on NaN); returns the error."""
    error, tolerance = deformable_attention_selftest(model, device, autocast_dtype, compiled)
    if not error <= tolerance:  # also catches NaN
        raise HarnessError(
            f"detector self-test failed: multi-scale deformable attention on {device} "
            f"({'compiled, ' if compiled else ''}{dtype_name}) differs from the float64 "
            f"reference by {error:.2e} (relative; tolerance {tolerance:.0e}); refusing to score with a broken "
            "kernel. Try device=cpu, dtype=float32 or compile=false, and report your torch/GPU versions.")
    return error
