"""Image loading and the official resize / normalise / pad, on numpy and PIL."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps

from m2fp_batch.decode import MAX_SIZE, SHORT_EDGE, rgb_array


def load_image(src: str | os.PathLike | bytes) -> np.ndarray:
    """Decode like the official pipeline: PIL, EXIF orientation applied, RGB.

    Returns (H, W, 3) uint8. Alpha is dropped, grayscale expanded.
    """
    with Image.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray, memoryview)) else src) as im:
        ImageOps.exif_transpose(im, in_place=True)
        return rgb_array(im if im.mode == "RGB" else im.convert("RGB"))


def target_size(h: int, w: int, short_edge: int = SHORT_EDGE, max_size: int = MAX_SIZE) -> tuple[int, int]:
    """The official resized (h, w): short side ``short_edge``, long side capped at ``max_size``,
    rounded with ``int(x + 0.5)``."""
    scale = short_edge * 1.0 / min(h, w)
    if h < w:
        newh, neww = short_edge * 1.0, scale * w
    else:
        newh, neww = scale * h, short_edge * 1.0
    if max(newh, neww) > max_size:
        s = max_size * 1.0 / max(newh, neww)
        newh, neww = newh * s, neww * s
    return int(newh + 0.5), int(neww + 0.5)


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """PIL bilinear (antialiased) resize of (H, W, 3) uint8 to ``size`` = (h, w)."""
    if image.shape[:2] == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def padded_size(size: tuple[int, int], divisibility: int) -> tuple[int, int]:
    return tuple(-(-s // divisibility) * divisibility for s in size)  # type: ignore[return-value]


def to_batch(
    images: Sequence[np.ndarray],
    pixel_mean: torch.Tensor,
    pixel_std: torch.Tensor,
    divisibility: int,
) -> torch.Tensor:
    """Stack resized uint8 images into a normalised, zero-padded (N, 3, Hp, Wp) float32 batch.

    The float conversion repeats the official ``ToTensor() * 255`` (divide, then multiply),
    and padding happens after normalisation, as in detectron2's ``ImageList``.
    """
    hp = max(padded_size(im.shape[:2], divisibility)[0] for im in images)
    wp = max(padded_size(im.shape[:2], divisibility)[1] for im in images)
    batch = torch.zeros((len(images), 3, hp, wp), dtype=torch.float32)
    for i, im in enumerate(images):
        x = torch.from_numpy(np.array(im, copy=True)).permute(2, 0, 1).float().div(255) * 255.0
        batch[i, :, : im.shape[0], : im.shape[1]] = (x - pixel_mean) / pixel_std
    return batch
