"""The M2FP / Mask2Former set loss: Hungarian matching, then a weighted classification loss
(no-object down-weighted) and sigmoid-BCE and dice mask losses on importance-sampled
points, on the last decoder layer and (deep supervision) on every earlier one.

Normalisation is global: ``num_masks`` and ``batch_size`` are the totals over all workers,
so the sum of the workers' losses equals the loss of the whole batch on one worker.
Skin-tone weights multiply each instance's (and each unmatched query's) loss terms; the
normalisers ignore them, so a weight w scales its instances' contribution exactly by w.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from m2fp_batch.train.config import LossSettings
from m2fp_batch.train.matcher import match
from m2fp_batch.train.points import point_sample, uncertain_points
from m2fp_batch.train.targets import Targets

TERMS = ("loss_ce", "loss_mask", "loss_dice")


@dataclass(frozen=True)
class Normalisers:
    """Global (all-worker) totals the loss terms divide by."""

    num_masks: float
    batch_size: int


def classification_loss(
    logits: torch.Tensor, targets: Sequence[Targets], matches: Sequence[tuple], cfg: LossSettings, norm: Normalisers
) -> torch.Tensor:
    """Sum of weighted cross-entropies of (B, Q, K + 1) logits over the class-weight total of
    the global batch (matched queries weigh 1, unmatched ``no_object_weight``)."""
    b, q, k1 = logits.shape
    classes = torch.full((b, q), k1 - 1, dtype=torch.int64, device=logits.device)
    skin = torch.ones((b, q), dtype=torch.float32, device=logits.device)
    for i, (t, (rows, cols)) in enumerate(zip(targets, matches)):
        skin[i] = t.image_weight
        if len(rows):
            classes[i, rows] = t.labels[cols]
            skin[i, rows] = t.weights[cols]
    class_w = torch.ones(k1, device=logits.device)
    class_w[-1] = cfg.no_object_weight
    ce = F.cross_entropy(logits.float().transpose(1, 2), classes, reduction="none")
    total_w = norm.num_masks + cfg.no_object_weight * (norm.batch_size * q - norm.num_masks)
    return (ce * class_w[classes] * skin).sum() / total_w


def mask_losses(
    masks: torch.Tensor,
    targets: Sequence[Targets],
    matches: Sequence[tuple],
    cfg: LossSettings,
    norm: Normalisers,
    generators: Sequence[torch.Generator],
) -> tuple[torch.Tensor, torch.Tensor]:
    """(BCE, dice) of matched (B, Q, h, w) mask logits against target masks, each the
    weighted sum over instances of its mean over importance-sampled points, / num_masks."""
    bce_sum = masks.new_zeros(())
    dice_sum = masks.new_zeros(())
    for b, (t, (rows, cols)) in enumerate(zip(targets, matches)):
        if not len(rows):
            continue
        src = masks[b, rows][:, None].float()  # (M, 1, h, w)
        tgt = t.masks[cols][:, None].float()  # (M, 1, H, W)
        with torch.no_grad():
            pts = uncertain_points(
                src, cfg.num_points, cfg.oversample_ratio, cfg.importance_sample_ratio, generators[b]
            )
            labels = point_sample(tgt, pts)[:, 0]
        logits = point_sample(src, pts)[:, 0]
        w = t.weights[cols].to(logits.device)
        bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(1)
        p = logits.sigmoid()
        dice = 1 - (2 * (p * labels).sum(1) + 1) / (p.sum(1) + labels.sum(1) + 1)
        bce_sum = bce_sum + (w * bce).sum()
        dice_sum = dice_sum + (w * dice).sum()
    return bce_sum / norm.num_masks, dice_sum / norm.num_masks


def layer_losses(
    out: Mapping[str, torch.Tensor],
    targets: Sequence[Targets],
    cfg: LossSettings,
    norm: Normalisers,
    generators: Sequence[torch.Generator],
) -> dict[str, torch.Tensor]:
    """The three loss terms of one decoder layer's predictions (unweighted by cfg weights)."""
    logits, masks = out["pred_logits"], out["pred_masks"]
    matches = [
        match(logits[b].detach(), masks[b].detach(), t.labels, t.masks, cfg, generators[b])
        for b, t in enumerate(targets)
    ]
    ce = classification_loss(logits, targets, matches, cfg, norm)
    bce, dice = mask_losses(masks, targets, matches, cfg, norm, generators)
    return {"loss_ce": ce, "loss_mask": bce, "loss_dice": dice}


def set_loss(
    outputs: Mapping,
    targets: Sequence[Targets],
    cfg: LossSettings,
    norm: Normalisers,
    generators: Sequence[torch.Generator],
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted total over the last layer and (with deep supervision) every aux layer.

    Returns (total loss tensor, {term: value} summed over layers, for logging).
    """
    layers = [outputs]
    if cfg.deep_supervision:
        layers = list(outputs.get("aux_outputs", [])) + layers
    factor = {"loss_ce": cfg.class_weight, "loss_mask": cfg.mask_weight, "loss_dice": cfg.dice_weight}
    total = outputs["pred_logits"].new_zeros(())
    logged = dict.fromkeys(TERMS, 0.0)
    for out in layers:
        terms = layer_losses(out, targets, cfg, norm, generators)
        for name, value in terms.items():
            total = total + factor[name] * value
            logged[name] += float(value.detach())
    return total, logged
