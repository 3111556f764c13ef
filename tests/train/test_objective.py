"""The training objective: targets, matcher against brute force, losses against hand-computed values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from m2fp_batch.train import criterion as crit
from m2fp_batch.train.config import LossSettings
from m2fp_batch.train.criterion import Normalisers, classification_loss, mask_losses, set_loss
from m2fp_batch.train.matcher import cost_matrix, match
from m2fp_batch.train.points import point_sample, random_points, uncertain_points
from m2fp_batch.train.targets import Targets, build_targets, person_groups


def test_targets_background_people_parts():
    semantic = np.array([[0, 2, 2, 0], [0, 13, 5, 0], [0, 5, 5, 9], [255, 0, 9, 9]])
    humans = np.array([[0, 1, 1, 0], [0, 1, 1, 0], [0, 1, 1, 2], [0, 0, 2, 2]])
    t = build_targets(semantic, humans, num_parsing=20, person_weights={1: 1.5, 2: 1.0})
    assert t.labels.tolist() == [0, 20, 2, 5, 13, 20, 9]
    assert t.weights.tolist() == [1.25, 1.5, 1.5, 1.5, 1.5, 1.0, 1.0]
    assert t.image_weight == 1.25
    # background = humans == 0 (agrees with semantic == 0), ignore pixel excluded
    assert t.masks[0].numpy().tolist() == ((humans == 0) & (semantic != 255)).tolist()
    assert t.masks[1].numpy().tolist() == (humans == 1).tolist()
    assert t.masks[3].numpy().tolist() == ((humans == 1) & (semantic == 5)).tolist()
    assert t.masks.sum(0).max() <= 2  # a pixel is in at most its person and its part


def test_targets_background_from_semantic_when_inconsistent():
    semantic = np.array([[0, 0], [2, 0]])
    humans = np.array([[0, 1], [1, 1]])  # person 1 covers background pixels
    t = build_targets(semantic, humans, num_parsing=20)
    assert t.masks[0].numpy().tolist() == (semantic == 0).tolist()


def test_person_groups_sequence_and_mapping():
    humans = np.array([[0, 1], [3, 3]])  # person 2 has no pixels left
    assert person_groups(humans, ["dark", "medium", "light"]) == {1: "dark", 3: "light"}
    assert person_groups(humans, {3: "medium"}) == {1: "unknown", 3: "medium"}
    assert person_groups(humans, ["dark"]) == {1: "dark", 3: "unknown"}


def _pair_cost(logit_row, pred_mask, label, tgt_mask, pts, cfg):
    """One (query, target) cost, computed independently with explicit formulas."""
    prob = torch.softmax(logit_row, -1)[label]
    x = point_sample(pred_mask[None, None], pts[None])[0, 0].double()
    y = point_sample(tgt_mask[None, None].float(), pts[None])[0, 0].double()
    bce = (-(y * torch.log(torch.sigmoid(x)) + (1 - y) * torch.log(1 - torch.sigmoid(x)))).mean()
    p = torch.sigmoid(x)
    dice = 1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
    return float(-cfg.class_weight * prob + cfg.mask_weight * bce + cfg.dice_weight * dice)


@pytest.mark.parametrize("seed,q,t", [(0, 4, 2), (1, 5, 3), (2, 4, 4), (3, 6, 3)])
def test_matcher_equals_brute_force(seed, q, t):
    g = torch.Generator().manual_seed(seed)
    cfg = LossSettings(num_points=64)
    logits = torch.randn(q, 5, generator=g) * 2
    masks = torch.randn(q, 6, 6, generator=g) * 3
    labels = torch.randint(0, 4, (t,), generator=g)
    tgt = torch.rand(t, 24, 24, generator=g) > 0.5
    rows, cols = match(logits, masks, labels, tgt, cfg, torch.Generator().manual_seed(99))
    pts = random_points(1, cfg.num_points, torch.Generator().manual_seed(99))[0]
    pair = [[_pair_cost(logits[i], masks[i], int(labels[j]), tgt[j], pts, cfg) for j in range(t)] for i in range(q)]
    assert np.allclose(cost_matrix(logits, masks, labels, tgt, pts, cfg).numpy(), np.array(pair), atol=1e-4)
    best = min(itertools.permutations(range(q), t), key=lambda perm: sum(pair[perm[j]][j] for j in range(t)))
    got = dict(zip(cols.tolist(), rows.tolist()))
    assert [got[j] for j in range(t)] == list(best)


def test_uncertain_points_prefer_uncertain_regions():
    logits = torch.full((1, 1, 8, 8), 10.0)
    logits[..., :, :2] = 0.0  # uncertain strip on the left
    pts = uncertain_points(logits, 100, 3.0, 0.75, torch.Generator().manual_seed(0))
    assert pts.shape == (1, 100, 2)
    assert (pts[0, :75, 0] < 0.25 + 1 / 16).all()  # importance-sampled ones lie in (or next to) the strip


def _fixed_pixel_points(n, h, w):
    ys, xs = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], -1)[None].expand(n, -1, -1)


def test_classification_loss_hand_computed():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])  # (1, Q=2, K+1=3)
    t = Targets(torch.tensor([1]), torch.ones(1, 4, 4, dtype=torch.bool), torch.tensor([1.0]))
    cfg = LossSettings(no_object_weight=0.1)
    loss = classification_loss(logits, [t], [(np.array([1]), np.array([0]))], cfg, Normalisers(1.0, 1))
    ce_matched = -math.log(math.e / (math.e + 2))  # query 1, class 1
    ce_empty = -math.log(1 / (math.e**2 + 2))  # query 0, no-object (class 2)
    assert float(loss) == pytest.approx((ce_matched + 0.1 * ce_empty) / 1.1, rel=1e-6)


def test_mask_losses_hand_computed(monkeypatch):
    monkeypatch.setattr(crit, "uncertain_points", lambda src, *a: _fixed_pixel_points(src.shape[0], 2, 2))
    pred = torch.tensor([[[[0.0, 2.0], [-1.0, 0.0]]]])  # (B=1, Q=1, 2, 2)
    tgt = torch.tensor([[[False, True], [True, False]]])  # target at the same 2x2 size
    t = Targets(torch.tensor([3]), tgt, torch.tensor([1.0]))
    bce, dice = mask_losses(pred, [t], [(np.array([0]), np.array([0]))], LossSettings(), Normalisers(1.0, 1), [None])
    s = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    exp_bce = (-math.log(1 - s(0)) - math.log(s(2)) - math.log(s(-1)) - math.log(1 - s(0))) / 4
    p = [s(0), s(2), s(-1), s(0)]
    exp_dice = 1 - (2 * (p[1] + p[2]) + 1) / (sum(p) + 2 + 1)
    assert float(bce) == pytest.approx(exp_bce, rel=1e-6)
    assert float(dice) == pytest.approx(exp_dice, rel=1e-6)


def _toy_batch(weights=(1.0, 1.0)):
    g = torch.Generator().manual_seed(5)
    outputs = {"pred_logits": torch.randn(2, 6, 4, generator=g), "pred_masks": torch.randn(2, 6, 4, 4, generator=g)}
    outputs["aux_outputs"] = [
        {"pred_logits": torch.randn(2, 6, 4, generator=g), "pred_masks": torch.randn(2, 6, 4, 4, generator=g)}
    ]
    sem = np.array([[0, 0, 1, 1], [0, 2, 2, 1], [0, 2, 2, 0], [0, 0, 0, 0]]).repeat(4, 0).repeat(4, 1)
    hum = (sem > 0).astype(np.int64)
    targets = [
        build_targets(sem, hum, 3, {1: weights[0]}),
        build_targets(sem[:, ::-1].copy(), hum[:, ::-1].copy(), 3, {1: weights[1]}),
    ]
    return outputs, targets


def _loss(outputs, targets, cfg, seed=0):
    gens = [torch.Generator().manual_seed(seed + i) for i in range(len(targets))]
    norm = Normalisers(float(sum(len(t) for t in targets)), len(targets))
    return set_loss(outputs, targets, cfg, norm, gens)


def test_deep_supervision_sums_layers():
    outputs, targets = _toy_batch()
    cfg = LossSettings(num_points=32)
    full, _ = _loss(outputs, targets, cfg)
    last, _ = _loss({k: outputs[k] for k in ("pred_logits", "pred_masks")}, targets, cfg)
    aux_only = {**outputs["aux_outputs"][0]}
    # generators advance per layer: compute the aux layer with fresh generators of the same seed
    aux, _ = _loss(aux_only, targets, cfg)
    nods, _ = _loss(outputs, targets, LossSettings(num_points=32, deep_supervision=False))
    assert float(nods) == pytest.approx(float(last), rel=1e-6)
    assert float(full) > float(last) and float(full) > float(aux)


def test_skin_weights_scale_each_image_exactly(monkeypatch):
    """A weight w on a person's instances scales that image's loss terms exactly by w."""
    monkeypatch.setattr(crit, "uncertain_points", lambda src, *a: _fixed_pixel_points(src.shape[0], 4, 4))
    cfg = LossSettings(num_points=16, deep_supervision=False)
    outputs, t1 = _toy_batch((1.0, 1.0))
    _, tw = _toy_batch((1.5, 1.0))
    single = [{k: outputs[k][i : i + 1] for k in ("pred_logits", "pred_masks")} for i in range(2)]
    norm = Normalisers(float(sum(len(t) for t in t1)), 2)

    def total(out, targets, idx):
        gens = [torch.Generator().manual_seed(10 + i) for i in idx]
        return float(set_loss(out, targets, cfg, norm, gens)[0])

    a = total(single[0], [t1[0]], [0])
    b = total(single[1], [t1[1]], [1])
    aw = total(single[0], [tw[0]], [0])
    both_w = total({k: outputs[k] for k in ("pred_logits", "pred_masks")}, tw, [0, 1])
    assert aw == pytest.approx(1.5 * a, rel=1e-5)  # only one person: every term carries 1.5
    assert both_w == pytest.approx(1.5 * a + b, rel=1e-5)
