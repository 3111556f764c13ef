"""Training-time augmentation of one sample: short-edge scale jitter, a random crop to a
fixed square canvas (padded where the image is smaller), and a horizontal flip that swaps
left/right classes. Every image of every batch then has the same canvas, so a batch split
over workers computes exactly what one worker would."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from m2fp_batch.train.config import FLIP_PAIRS, AugmentSettings
from m2fp_batch.train.targets import IGNORE_LABEL


@dataclass
class Crop:
    """A sample on the training canvas: image (S, S, 3) uint8, semantic (S, S) int64 with
    IGNORE_LABEL outside the image, humans (S, S) int64 (0 outside)."""

    image: np.ndarray
    semantic: np.ndarray
    humans: np.ndarray


def flip_permutation(class_names: Sequence[str]) -> np.ndarray:
    """Class-id permutation of a horizontal flip (left <-> right pairs swapped)."""
    perm = np.arange(max(len(class_names), IGNORE_LABEL + 1))
    index = {name: i for i, name in enumerate(class_names)}
    for left, right in FLIP_PAIRS:
        if left in index and right in index:
            perm[index[left]], perm[index[right]] = index[right], index[left]
    return perm


def _resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an integer map to (h, w)."""
    h, w = labels.shape
    ys = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64), h - 1)
    xs = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64), w - 1)
    return labels[ys[:, None], xs[None, :]]


def augment(
    image: np.ndarray,
    semantic: np.ndarray,
    humans: np.ndarray,
    cfg: AugmentSettings,
    flip_perm: np.ndarray,
    rng: np.random.Generator,
) -> Crop:
    """Scale so the short edge is ``short_edge x U(min_scale, max_scale)``, crop a random
    canvas-sized window (centred when jitter and flip are off), pad, maybe flip."""
    h, w = semantic.shape
    if image.shape[:2] != (h, w) or humans.shape != (h, w):
        raise ValueError(f"image {image.shape[:2]}, semantic {semantic.shape}, humans {humans.shape} differ")
    scale = cfg.short_edge * rng.uniform(cfg.min_scale, cfg.max_scale) / min(h, w)
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    img = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
    sem, hum = _resize_labels(semantic, (nh, nw)), _resize_labels(humans, (nh, nw))
    s = cfg.canvas
    random_pos = cfg.min_scale != cfg.max_scale or cfg.flip_prob > 0
    y0 = int(rng.integers(0, nh - s + 1)) if random_pos and nh > s else max(0, (nh - s) // 2)
    x0 = int(rng.integers(0, nw - s + 1)) if random_pos and nw > s else max(0, (nw - s) // 2)
    img, sem, hum = img[y0 : y0 + s, x0 : x0 + s], sem[y0 : y0 + s, x0 : x0 + s], hum[y0 : y0 + s, x0 : x0 + s]
    out = Crop(np.zeros((s, s, 3), np.uint8), np.full((s, s), IGNORE_LABEL, np.int64), np.zeros((s, s), np.int64))
    ch, cw = sem.shape
    out.image[:ch, :cw], out.semantic[:ch, :cw], out.humans[:ch, :cw] = img, sem, hum
    if rng.random() < cfg.flip_prob:
        out = Crop(out.image[:, ::-1].copy(), flip_perm[out.semantic[:, ::-1]], out.humans[:, ::-1].copy())
        # the padding moves to the left: it stays IGNORE_LABEL / 0 under the permutation
    return out
