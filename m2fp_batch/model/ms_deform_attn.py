"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch.

The sampling core is the hot spot of the whole network on CPU. The fast path turns the
bilinear sampling of every (query, head, level, point) into one weighted gather-sum:
each sample reads 4 neighbouring value rows with weight
``attention_weight * bilinear_weight``, which is exactly
``F.embedding_bag(..., per_sample_weights=..., mode="sum")`` over a flat value table whose
levels carry a zero border (so a neighbour outside the map reads zeros, as ``grid_sample``'s
zero padding). No (heads, dim, queries, points) intermediate is materialised.

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

    Same arguments and result as :func:`ms_deform_attn_sample_naive`. Each level's values
    get a zero border (1 pixel before, 2 after) and sample positions are clamped to
    [-1, size]: a neighbour outside the map then reads a zero row, so no validity masks
    are needed (a position clamped from further outside has both neighbours in the border).
    """
    n, s, m, d = value.shape
    _, q, _, n_levels, p, _ = sampling_locations.shape
    dev, dt = value.device, sampling_locations.dtype
    padded = [(h + 3, w + 3) for h, w in spatial_shapes]
    levels = value.split([h * w for h, w in spatial_shapes], dim=1)
    table = torch.cat(
        [
            F.pad(v.permute(0, 2, 3, 1).reshape(n * m, d, h, w), (1, 2, 1, 2)).flatten(2)
            for v, (h, w) in zip(levels, spatial_shapes)
        ],
        dim=2,
    )  # (N*M, D, S') with S' = sum of padded areas
    s_pad = table.shape[2]
    table = table.transpose(1, 2).reshape(n * m * s_pad, d)  # row = (n * M + m) * S' + padded position
    # Row numbers are built in floating point (exact below 2**24 in float32).
    ft = torch.float32 if n * m * s_pad < 2**24 else torch.float64

    size = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=dt, device=dev).view(1, 1, 1, n_levels, 1, 2)
    # pixel centres at integers. Not addcmul: its vectorised body fuses the multiply-add and its
    # scalar tail does not, so a result would depend on where an element falls in the batch
    pix = sampling_locations * size - 0.5
    pix = torch.minimum(pix.clamp_(min=-1), size)
    base = pix.floor()
    frac = pix.sub_(base)
    fx, fy = frac.unbind(-1)
    wy1 = attention_weights * fy
    wy = torch.stack((attention_weights - wy1, wy1), dim=-1).unsqueeze(-1)  # (..., 2 y, 1)
    wx = torch.stack((1 - fx, fx), dim=-1).unsqueeze(-2)  # (..., 1, 2 x)
    weights = wy * wx  # (N, Q, M, L, P, 2 y, 2 x)

    starts = [0]
    for h, w in padded[:-1]:
        starts.append(starts[-1] + h * w)
    pw = torch.tensor([w for _, w in padded], dtype=ft, device=dev).view(1, 1, 1, n_levels, 1)
    # row of the top-left neighbour: the level's first row, + (y + 1) * padded width + (x + 1)
    first = torch.tensor(starts, dtype=ft, device=dev).view(1, 1, 1, n_levels, 1) + pw + 1
    first = torch.arange(n * m, dtype=ft, device=dev).view(n, 1, m, 1, 1) * s_pad + first
    top_left = torch.addcmul(first, base[..., 1].to(ft), pw).add_(base[..., 0].to(ft))  # (N, Q, M, L, P)
    offsets = torch.stack((torch.zeros_like(pw), torch.ones_like(pw), pw, pw + 1), dim=-1)
    idx = (top_left.unsqueeze(-1) + offsets).to(torch.int64)  # (..., 4) = (y0x0, y0x1, y1x0, y1x1)

    k = n_levels * p * 4
    out = F.embedding_bag(idx.view(-1, k), table, per_sample_weights=weights.reshape(-1, k).to(table.dtype), mode="sum")
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
