"""COCO run-length encoding of binary masks, through pycocotools.

Every mask the job writes is a COCO RLE ``{"size": [H, W], "counts": str}``: the compressed
string form of pycocotools, stored as UTF-8 text (not bytes) so any Parquet/JSON reader can
carry it, and decoded again with ``pycocotools.mask.decode`` after ``counts.encode()``.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def encode(mask: np.ndarray) -> dict:
    """(H, W) bool mask -> ``{"size": [H, W], "counts": str}`` (COCO compressed RLE)."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"expected an (H, W) mask, got shape {m.shape}")
    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8, copy=False)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def encode_crop(crop: np.ndarray, bbox: tuple[int, int, int, int], shape: tuple[int, int]) -> dict:
    """Encode a mask given as a crop inside ``bbox`` = (x0, y0, x1, y1) of an image of ``shape`` = (H, W)."""
    x0, y0, x1, y1 = (int(v) for v in bbox)
    full = np.zeros((int(shape[0]), int(shape[1])), dtype=np.uint8, order="F")
    full[y0:y1, x0:x1] = crop
    return encode(full)


def decode(rle: dict) -> np.ndarray:
    """``{"size", "counts"}`` (counts as str or bytes) -> (H, W) bool mask."""
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    h, w = (int(v) for v in rle["size"])
    return mask_utils.decode({"size": [h, w], "counts": counts}).astype(bool)


def area(rle: dict) -> int:
    """Pixel count of an encoded mask, without decoding it."""
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return int(mask_utils.area({"size": [int(v) for v in rle["size"]], "counts": counts}))
