"""Hungarian matching of predicted queries to target instances (Mask2Former's matcher).

Cost per (query, target) = class weight x (-p(target class)) + mask weight x mean sigmoid
BCE + dice weight x dice loss, the mask terms at one set of random points shared by all
queries and targets of the image.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch.nn import functional as F

from m2fp_batch.train.config import LossSettings
from m2fp_batch.train.points import point_sample, random_points


def pairwise_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over points of sigmoid BCE for every pair: (Q, P) logits, (T, P) labels -> (Q, T)."""
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    return (pos @ labels.T + neg @ (1 - labels).T) / logits.shape[1]


def pairwise_dice(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Dice loss 1 - (2 |p t| + 1) / (|p| + |t| + 1) for every pair: (Q, P), (T, P) -> (Q, T)."""
    p = logits.sigmoid()
    return 1 - (2 * p @ labels.T + 1) / (p.sum(-1)[:, None] + labels.sum(-1)[None, :] + 1)


def cost_matrix(
    pred_logits: torch.Tensor,
    pred_masks: torch.Tensor,
    tgt_labels: torch.Tensor,
    tgt_masks: torch.Tensor,
    points: torch.Tensor,
    cfg: LossSettings,
) -> torch.Tensor:
    """(Q, T) matching cost of one image.

    pred_logits: (Q, K + 1); pred_masks: (Q, h, w) logits; tgt_labels: (T,); tgt_masks:
    (T, H, W) bool or float; points: (P, 2) normalised (x, y) shared by all masks.
    """
    prob = pred_logits.float().softmax(-1)
    cost_class = -prob[:, tgt_labels]
    q, t = pred_masks.shape[0], tgt_masks.shape[0]
    pm = point_sample(pred_masks[:, None].float(), points[None].expand(q, -1, -1))[:, 0]
    tm = point_sample(tgt_masks[:, None].float(), points[None].expand(t, -1, -1))[:, 0]
    return (
        cfg.class_weight * cost_class + cfg.mask_weight * pairwise_bce(pm, tm) + cfg.dice_weight * pairwise_dice(pm, tm)
    )


@torch.no_grad()
def match(
    pred_logits: torch.Tensor,
    pred_masks: torch.Tensor,
    tgt_labels: torch.Tensor,
    tgt_masks: torch.Tensor,
    cfg: LossSettings,
    generator: torch.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one assignment for one image: (query indices, target indices)."""
    if tgt_labels.numel() == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    points = random_points(1, cfg.num_points, generator, pred_masks.device)[0]
    cost = cost_matrix(pred_logits, pred_masks, tgt_labels, tgt_masks, points, cfg)
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    return rows.astype(np.int64), cols.astype(np.int64)
