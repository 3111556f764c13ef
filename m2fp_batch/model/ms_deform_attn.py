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
    grids = 2 * sampling_locations - 1
    weights = attention_weights.transpose(1, 2).reshape(n * m, 1, q, n_levels, p)
    out, start = None, 0
    for lvl, (h, w) in enumerate(spatial_shapes):  # slices: their bounds stay symbolic under tracing
        v = value[:, start : start + h * w].flatten(2).transpose(1, 2).reshape(n * m, d, h, w)
        start = start + h * w
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)  # (N*M, Q, P, 2)
        sampled = F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)  # (N*M, D, Q, P)
        # summed level by level: no (N*M, D, Q, L*P) stack (a 100 MB concat per layer in an exported graph)
        level = (sampled * weights[..., lvl, :]).sum(-1)  # (N*M, D, Q)
        out = level if out is None else out + level
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
    n, _, m, d = value.shape
    _, q, _, n_levels, p, _ = sampling_locations.shape
    table, level_rows, padded_w = _padded_table(value, spatial_shapes, p)
    s_pad = table.shape[0] // (n * m)
    sizes = _level_pattern(spatial_shapes, p, sampling_locations)  # (L*P*2,) as (W, H) per point

    # Element-wise work runs on (N, Q, M, L*P*2) rows with a short contiguous pattern broadcast
    # along them (a (L, 1, 2) broadcast over 6-D shapes is slower on CPU: docs/performance.md,
    # "Numbers behind the code"). Every value
    # is computed by the same operations as the textbook formula, so results do not depend on
    # the layout or the batch. Not addcmul: its vectorised body fuses the multiply-add and its
    # scalar tail does not, which would make a result depend on an element's position.
    pix = sampling_locations.reshape(n, q, m, -1) * sizes - 0.5  # pixel centres at integers
    pix = torch.minimum(pix.clamp_(min=-1), sizes)
    base = pix.floor()
    frac = pix.sub_(base).view(n, q, m, n_levels * p, 2)
    fx, fy = frac.unbind(-1)
    attn = attention_weights.reshape(n, q, m, n_levels * p)
    wy1 = attn * fy
    wy0 = attn - wy1
    wx0 = 1 - fx
    # each bag lists its samples corner by corner (y0x0, y0x1, y1x0, y1x1), each corner over (L, P)
    weights = _corner_products(((wy0, wx0), (wy0, fx), (wy1, wx0), (wy1, fx)))  # (N, Q, M, 4, L*P)

    bxy = base.to(torch.int64).view(n, q, m, n_levels * p, 2)
    heads = torch.arange(n * m, dtype=torch.int64, device=value.device).view(n, 1, m, 1) * s_pad
    top_left = bxy[..., 1] * padded_w + bxy[..., 0] + (heads + level_rows)  # (N, Q, M, L*P) table rows
    idx = top_left.new_empty(n, q, m, 4, n_levels * p)  # corners as the weights
    # (adding an (L*P,) row: a copy_ or a scalar add into a strided int64 view is slower, ibid.)
    steps = torch.stack((torch.zeros_like(padded_w), torch.ones_like(padded_w), padded_w, padded_w + 1))
    for c in range(4):
        torch.add(top_left, steps[c], out=idx[:, :, :, c])

    k = n_levels * p * 4
    out = F.embedding_bag(idx.view(-1, k), table, per_sample_weights=weights.view(-1, k).to(table.dtype), mode="sum")
    return out.view(n, q, m * d)


def _padded_table(
    value: torch.Tensor, spatial_shapes: Sequence[tuple[int, int]], p: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The flat value table with a zero border around each level, and the row arithmetic.

    Args:
        value: (N, S, M, D).

    Returns:
        table (N*M*S', D) with row ``(n * M + m) * S' + padded position``, S' the sum of the
        padded areas (H+3)(W+3); level_rows (L*P,) int64, the row of the level's pixel (0, 0)
        within a head's block, and padded_w (L*P,) int64, the level's padded width, for each
        of the ``p`` points of each level.
    """
    n, _, m, d = value.shape
    padded = [(h + 3, w + 3) for h, w in spatial_shapes]
    s_pad = sum(h * w for h, w in padded)
    table = value.new_zeros(n, m, s_pad, d)
    start, src, firsts = 0, 0, []
    for (h, w), (ph, pw) in zip(spatial_shapes, padded):
        level = value[:, src : src + h * w].view(n, h, w, m, d).permute(0, 3, 1, 2, 4)  # (N, M, H, W, D)
        table[:, :, start : start + ph * pw].view(n, m, ph, pw, d)[:, :, 1 : h + 1, 1 : w + 1] = level
        firsts.append(start + pw + 1)  # a 1-pixel border before each row and above the first
        start, src = start + ph * pw, src + h * w
    dev = value.device
    level_rows = torch.tensor(firsts, dtype=torch.int64, device=dev).repeat_interleave(p)
    padded_w = torch.tensor([pw for _, pw in padded], dtype=torch.int64, device=dev).repeat_interleave(p)
    return table.view(n * m * s_pad, d), level_rows, padded_w


def _corner_products(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """(N, Q, M, 4, L*P): the products of the 4 pairs of (N, Q, M, L*P) tensors, along dim 3.

    Without autograd they are written in place (``torch.stack`` along an inner dim copies in
    small pieces, slower: docs/performance.md, "Numbers behind the code"); when training needs
    gradients, ``torch.stack``. Same values."""
    if torch.is_grad_enabled() and any(t.requires_grad for pair in pairs for t in pair):
        return torch.stack([a * b for a, b in pairs], dim=3)
    a0 = pairs[0][0]
    out = a0.new_empty(*a0.shape[:3], len(pairs), a0.shape[3])
    for c, (a, b) in enumerate(pairs):
        torch.mul(a, b, out=out[:, :, :, c])
    return out


def _level_pattern(spatial_shapes: Sequence[tuple[int, int]], p: int, like: torch.Tensor) -> torch.Tensor:
    """(L*P*2,) the (W, H) of each level repeated for its P points: the divisor / scale of a location row."""
    if torch.jit.is_tracing():  # the sizes are 0-dim tensors there: stacked, they stay symbolic in the graph
        wh = torch.stack([torch.stack((w, h)) for h, w in spatial_shapes]).to(dtype=like.dtype, device=like.device)
    else:
        wh = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=like.dtype, device=like.device)
    return wh[:, None, :].expand(-1, p, -1).reshape(-1)


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
        # the same values as ``reference + offsets / (W, H)`` broadcast per level, on (N, Q, M, L*P*2) rows
        ref = reference_points[:, :, None, :, None, :].expand(n, q, 1, n_levels, p, 2).reshape(n, q, 1, -1)
        locations = (offsets.view(n, q, m, -1) / _level_pattern(spatial_shapes, p, offsets) + ref).view(offsets.shape)
        # an exported graph samples with grid_sample (ONNX GridSample): embedding_bag has no ONNX op
        core = ms_deform_attn_sample_naive if self.naive or torch.jit.is_tracing() else ms_deform_attn_sample
        return self.output_proj(core(value, spatial_shapes, locations, weights))
