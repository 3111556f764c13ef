"""Augmentation (canvas, flip with left/right swap) and the skin-tone-balanced sampler."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from m2fp_batch.annotate.palette import CIHP_CLASSES
from m2fp_batch.train.augment import augment, flip_permutation
from m2fp_batch.train.config import AugmentSettings, parse_skin_weights
from m2fp_batch.train.sampler import SkinBalancedSampler, image_groups, sampling_group
from m2fp_batch.train.targets import IGNORE_LABEL

LEFT_ARM, RIGHT_ARM = CIHP_CLASSES.index("Left-arm"), CIHP_CLASSES.index("Right-arm")


def _sample(h=60, w=90):
    image = np.zeros((h, w, 3), np.uint8)
    image[:, : w // 2] = 200
    semantic = np.zeros((h, w), np.int64)
    semantic[10:50, 5:40] = LEFT_ARM  # on the left half
    humans = (semantic > 0).astype(np.int64)
    return image, semantic, humans


def test_flip_swaps_left_and_right_classes():
    image, semantic, humans = _sample()
    cfg = AugmentSettings(short_edge=60, crop_size=96, min_scale=1.0, max_scale=1.0, flip_prob=1.0)
    out = augment(image, semantic, humans, cfg, flip_permutation(CIHP_CLASSES), np.random.default_rng(0))
    assert out.image.shape == (96, 96, 3) and out.semantic.shape == (96, 96)
    assert LEFT_ARM not in out.semantic and RIGHT_ARM in out.semantic
    xs = np.nonzero(out.semantic == RIGHT_ARM)[1]
    assert xs.min() > 45  # now on the right
    assert (out.semantic[:, :6] == IGNORE_LABEL).all()  # the padding moved left with the flip
    assert (out.humans > 0).sum() == (out.semantic == RIGHT_ARM).sum()


def test_no_augmentation_keeps_labels_aligned_and_pads_with_ignore():
    image, semantic, humans = _sample()
    cfg = AugmentSettings.off(short_edge=60, crop_size=96)
    out = augment(image, semantic, humans, cfg, flip_permutation(CIHP_CLASSES), np.random.default_rng(0))
    assert np.array_equal(out.semantic[:60, :90], semantic)
    assert (out.semantic[60:] == IGNORE_LABEL).all() and (out.semantic[:, 90:] == IGNORE_LABEL).all()
    assert np.array_equal(out.image[:60, :90], image)


def test_scale_jitter_and_crop_stay_on_canvas():
    image, semantic, humans = _sample(120, 200)
    cfg = AugmentSettings(short_edge=64, min_scale=0.5, max_scale=2.0)
    for seed in range(10):
        out = augment(image, semantic, humans, cfg, flip_permutation(CIHP_CLASSES), np.random.default_rng(seed))
        assert out.image.shape == (64, 64, 3)
        assert set(np.unique(out.semantic)) <= {0, LEFT_ARM, RIGHT_ARM, IGNORE_LABEL}


def test_sampling_group_rule():
    rarity = Counter({"light": 100, "medium": 30, "dark": 5})
    assert sampling_group(["light"], rarity) == "light"
    assert sampling_group(["light", "dark", "unknown"], rarity) == "dark"  # rarest known group
    assert sampling_group(["unknown"], rarity) == "unknown"
    assert sampling_group([], rarity) == "unknown"  # no people


def test_balanced_sampler_is_uniform_over_groups_on_a_skewed_set():
    people = [["light"]] * 800 + [["medium"]] * 150 + [["dark"]] * 40 + [["light", "dark"]] * 5 + [[]] * 5
    groups = image_groups(people)
    sampler = SkinBalancedSampler(groups, seed=1)
    draws = [groups[i] for step in range(100) for i in sampler.draw(100, step)]
    freq = Counter(draws)
    assert len(draws) == 10_000 and set(freq) == {"light", "medium", "dark", "unknown"}
    for g in freq:
        assert abs(freq[g] / 10_000 - 1 / 4) <= 0.05 * (1 / 4), freq


def test_unbalanced_sampler_follows_the_data_and_is_deterministic():
    groups = ["light"] * 90 + ["dark"] * 10
    s = SkinBalancedSampler(groups, seed=2, balanced=False)
    assert s.draw(8, 3) == SkinBalancedSampler(groups, seed=2, balanced=False).draw(8, 3)
    frac = np.mean([groups[i] == "dark" for step in range(100) for i in s.draw(100, step)])
    assert 0.07 < frac < 0.13


def test_parse_skin_weights():
    assert parse_skin_weights("light=1.0,medium=1.2,dark=1.5") == {"light": 1.0, "medium": 1.2, "dark": 1.5}
    assert parse_skin_weights(None) == {}
    for bad in ("purple=2", "light", "dark=x", "dark=-1", "dark=inf"):
        with pytest.raises(ValueError, match="--skin-weights"):
            parse_skin_weights(bad)
