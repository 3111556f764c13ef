"""Point sampling for the mask losses and the matcher (PointRend style)."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def point_sample(maps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample (N, C, H, W) maps at (N, P, 2) normalised (x, y) in [0, 1] -> (N, C, P).

    A coordinate c maps to pixel position c * size - 0.5 (pixel centres at k + 0.5), the
    ``align_corners=False`` convention; outside the map the value is 0.
    """
    grid = (2.0 * coords - 1.0).unsqueeze(2)  # (N, P, 1, 2)
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False).squeeze(3)


def random_points(n: int, p: int, generator: torch.Generator, device: torch.device | None = None) -> torch.Tensor:
    """(n, p, 2) uniform points in [0, 1)."""
    return torch.rand((n, p, 2), generator=generator).to(device or "cpu")


def uncertain_points(
    logits: torch.Tensor,
    num_points: int,
    oversample_ratio: float,
    importance_ratio: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Importance-sampled points for (N, 1, H, W) mask logits -> (N, num_points, 2).

    ``num_points * oversample_ratio`` uniform candidates are drawn; the
    ``importance_ratio * num_points`` most uncertain ones (logit closest to 0) are kept and
    the rest are fresh uniform points.
    """
    n = logits.shape[0]
    candidates = random_points(n, int(num_points * oversample_ratio), generator, logits.device)
    uncertainty = -point_sample(logits, candidates).abs()[:, 0]  # (N, S)
    k = int(importance_ratio * num_points)
    idx = uncertainty.topk(k, dim=1).indices
    chosen = torch.gather(candidates, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
    if num_points - k > 0:
        chosen = torch.cat([chosen, random_points(n, num_points - k, generator, logits.device)], dim=1)
    return chosen
