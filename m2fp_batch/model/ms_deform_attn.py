"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch.

The sampling core is the hot spot of the whole network on CPU. The fast path turns the
bilinear sampling of every (query, head, level, point) into one weighted gather-sum:
each sample reads 4 neighbouring value rows with weight
``attention_weight * bilinear_weight`` (zero for a neighbour outside the map), which is
exactly ``F.embedding_bag(..., per_sample_weights=..., mode="sum")`` over a flat value
table. No (heads, dim, queries, points) intermediate is materialised.

:func:`ms_deform_attn_sample_naive` is the textbook ``grid_sample`` formulation (what
the official code runs on CPU); tests hold the fast path to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def ms_deform_attn_sample_naive(
    value: torch.Tensor,
    spatial_shapes: Sequence[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Reference sampling with ``grid_sample`` (bilinear, zero padding, align_corners=False).

    Args:
        value: (N, S, M, D), S = sum of H_l * W_l over levels, M heads of D channels.
        spatial_shapes: L pairs (H_l, W_l), in the order the levels are stacked in ``value``.
        sampling_locations: (N, Q, M, L, P, 2), (x, y) in [0, 1] relative to each level.
        attention_weights: (N, Q, M, L, P), softmax-normalised over (L, P).

    Returns:
        (N, Q, M * D)
    """
    n, _, m, d = value.shape
    _, q, _, n_levels, p, _ = sampling_locations.shape
    sizes = [h * w for h, w in spatial_shapes]
    value_list = value.split(sizes, dim=1)
    grids = 2 * sampling_locations - 1
    sampled = []
    for lvl, (h, w) in enumerate(spatial_shapes):
        v = value_list[lvl].flatten(2).transpose(1, 2).reshape(n * m, d, h, w)
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)  # (N*M, Q, P, 2)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    weights = attention_weights.transpose(1, 2).reshape(n * m, 1, q, n_levels * p)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1)  # (N*M, D, Q)
    return out.view(n, m * d, q).transpose(1, 2).contiguous()


def ms_deform_attn_sample(
    value: torch.Tensor,
    spatial_shapes: Sequence[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Fast sampling: one ``embedding_bag`` over all queries, heads, levels and points.

    Same arguments and result as :func:`ms_deform_attn_sample_naive`.
    """
    n, s, m, d = value.shape
    _, q, _, n_levels, p, _ = sampling_locations.shape
    dev, dt = value.device, sampling_locations.dtype
    table = value.permute(0, 2, 1, 3).reshape(n * m * s, d)  # row = (n * M + m) * S + position
    # Row numbers are built in floating point (exact below 2**24 in float32).
    ft = torch.float32 if n * m * s < 2**24 else torch.float64

    size = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=dt, device=dev)  # (L, 2) as (W, H)
    size = size.view(1, 1, 1, n_levels, 1, 2)
    pix = sampling_locations * size - 0.5  # align_corners=False: pixel centres at integers
    base = torch.floor(pix)
    frac = pix - base
    # Per axis, the weights of the lower and upper neighbour, zero for one outside the map.
    # A zero-weight neighbour may point anywhere: its row is only clamped into the table.
    w_lo = (1 - frac) * ((base >= 0) & (base <= size - 1))
    w_hi = frac * ((base >= -1) & (base <= size - 2))
    wx = torch.stack((w_lo[..., 0], w_hi[..., 0]), dim=-1)  # (N, Q, M, L, P, 2)
    wy = torch.stack((w_lo[..., 1], w_hi[..., 1]), dim=-1)
    weights = (wy * attention_weights.unsqueeze(-1)).unsqueeze(-1) * wx.unsqueeze(-2)  # (..., 2 y, 2 x)

    starts = [0]
    for h, w in spatial_shapes[:-1]:
        starts.append(starts[-1] + h * w)
    level_start = torch.tensor(starts, dtype=ft, device=dev).view(1, 1, 1, n_levels, 1)
    width = size[..., 0].to(ft)  # (1, 1, 1, L, 1)
    row0 = torch.arange(n * m, dtype=ft, device=dev).view(n, 1, m, 1, 1) * s + level_start
    top_left = row0 + base[..., 1].to(ft) * width + base[..., 0].to(ft)  # (N, Q, M, L, P)
    offsets = torch.stack((torch.zeros_like(width), torch.ones_like(width), width, width + 1), dim=-1)
    idx = (top_left.unsqueeze(-1) + offsets).clamp_(0, n * m * s - 1)  # (..., 4) = (y0x0, y0x1, y1x0, y1x1)

    k = n_levels * p * 4
    out = F.embedding_bag(
        idx.reshape(-1, k).to(torch.int64), table, per_sample_weights=weights.reshape(-1, k).to(table.dtype), mode="sum"
    )
    return out.view(n, q, m * d)


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention (keys ``sampling_offsets``, ``attention_weights``,
    ``value_proj``, ``output_proj`` as upstream).

    Args:
        d_model: channels C.
        n_levels: feature levels L.
        n_heads: heads M (C divisible by M).
        n_points: sampling points P per head and level.
        naive: use the ``grid_sample`` reference core (for tests and debugging).
    """

    def __init__(self, d_model: int, n_levels: int, n_heads: int, n_points: int, naive: bool = False) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.naive = naive
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        input_flatten: torch.Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
    ) -> torch.Tensor:
        """
        Args:
            query: (N, Q, C) queries (features plus position embedding).
            reference_points: (N, Q, L, 2) normalised (x, y) reference per level.
            input_flatten: (N, S, C) the values, levels stacked as in ``spatial_shapes``.
            spatial_shapes: L pairs (H_l, W_l).

        Returns:
            (N, Q, C)
        """
        n, q, _ = query.shape
        s = input_flatten.shape[1]
        m, n_levels, p = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(input_flatten).view(n, s, m, self.d_model // m)
        offsets = self.sampling_offsets(query).view(n, q, m, n_levels, p, 2)
        weights = self.attention_weights(query).view(n, q, m, n_levels * p)
        weights = F.softmax(weights, -1).view(n, q, m, n_levels, p)
        normalizer = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=query.dtype, device=query.device)
        locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        core = ms_deform_attn_sample_naive if self.naive else ms_deform_attn_sample
        return self.output_proj(core(value, spatial_shapes, locations, weights))
