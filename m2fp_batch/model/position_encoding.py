"""Sine position embedding of DETR, normalised to the feature map (no padding mask)."""

from __future__ import annotations

import functools
import math

import torch
from torch import nn


def _sine_from_ones(ones: torch.Tensor, num_pos_feats: int, temperature: float) -> torch.Tensor:
    """(1, 2 * num_pos_feats, h, w) from a (1, h, w) tensor of ones (its size is the map's)."""
    scale = 2 * math.pi
    eps = 1e-6
    y_embed = ones.cumsum(1)
    x_embed = ones.cumsum(2)
    y_embed = y_embed / (y_embed[:, -1:, :] + eps) * scale
    x_embed = x_embed / (x_embed[:, :, -1:] + eps) * scale
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=ones.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)
    pos_x = x_embed[:, :, :, None] / dim_t
    pos_y = y_embed[:, :, :, None] / dim_t
    pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2).contiguous()


@functools.lru_cache(maxsize=32)
def _sine_table(h: int, w: int, num_pos_feats: int, temperature: float, device: torch.device) -> torch.Tensor:
    """(1, 2 * num_pos_feats, h, w): depends on the map size only, so it is computed once."""
    return _sine_from_ones(torch.ones((1, h, w), dtype=torch.float32, device=device), num_pos_feats, temperature)


class PositionEmbeddingSine(nn.Module):
    """2-D sine/cosine position embedding over a whole (unpadded-mask) feature map.

    Args:
        num_pos_feats: channels per axis; the output has ``2 * num_pos_feats`` channels.
        temperature: the frequency base.
    """

    def __init__(self, num_pos_feats: int, temperature: float = 10000.0) -> None:
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, 2 * num_pos_feats, H, W) float32 (read-only, shared)."""
        if torch.jit.is_tracing():  # an exported graph computes it from the map's size, whatever that is
            ones = torch.ones_like(x[:1, 0], dtype=torch.float32)
            return _sine_from_ones(ones, self.num_pos_feats, float(self.temperature)).expand(x.shape[0], -1, -1, -1)
        b, _, h, w = x.shape
        table = _sine_table(int(h), int(w), self.num_pos_feats, float(self.temperature), x.device)
        return table.expand(b, -1, -1, -1)
