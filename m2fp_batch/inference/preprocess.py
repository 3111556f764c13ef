"""The official resize / normalise / pad of the model input, on numpy and PIL (the sizes:
:mod:`m2fp_batch.resize`)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from m2fp_batch.decode import decode_image

__all__ = ["load_image", "padded_size", "resize", "to_batch"]


def load_image(src: str | os.PathLike | bytes) -> np.ndarray:
    """Deprecated: :func:`m2fp_batch.decode.decode_image`, the one decoder (this reads ``src`` and calls it)."""
    warnings.warn(
        "load_image is deprecated: use m2fp_batch.decode.decode_image(bytes), the decoder of the job and the "
        "service; load_image goes in the next release",
        DeprecationWarning,
        stacklevel=2,
    )
    data = bytes(src) if isinstance(src, (bytes, bytearray, memoryview)) else Path(src).read_bytes()
    return decode_image(data)


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
