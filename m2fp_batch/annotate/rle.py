"""COCO run-length encoding of binary masks, through pycocotools.

Every mask the job writes is a COCO RLE ``{"size": [H, W], "counts": str}``: the compressed
string form of pycocotools, stored as UTF-8 text (not bytes) so any Parquet/JSON reader can
carry it, and decoded again with ``pycocotools.mask.decode`` after ``counts.encode()``.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from m2fp_batch.memory import STRIP_PIXELS


def encode(mask: np.ndarray) -> dict:
    """(H, W) bool mask -> ``{"size": [H, W], "counts": str}`` (COCO compressed RLE)."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"expected an (H, W) mask, got shape {m.shape}")
    return encode_crop(m, (0, 0, m.shape[1], m.shape[0]), m.shape)


def encode_crop(crop: np.ndarray, bbox: tuple[int, int, int, int], shape: tuple[int, int]) -> dict:
    """Encode a mask given as a crop inside ``bbox`` = (x0, y0, x1, y1) of an image of ``shape`` = (H, W).

    The runs come from the crop alone, a strip of columns at a time, never from a full-size
    mask: pycocotools' own encoder takes 5 bytes per image pixel, 450 MB on a 90-Mpx photo.
    """
    x0, y0, x1, y1 = (int(v) for v in bbox)
    h, w = int(shape[0]), int(shape[1])
    crop = np.asarray(crop, dtype=bool)
    if crop.shape != (y1 - y0, x1 - x0):
        raise ValueError(f"crop {crop.shape} does not match bbox {bbox}")
    bh = y1 - y0
    step = max(1, STRIP_PIXELS // max(1, bh))  # columns at a time
    found = []
    for c0 in range(0, x1 - x0, step):
        cols = crop[:, c0 : c0 + step]
        padded = np.zeros((cols.shape[1], bh + 2), bool)  # each column between two off pixels
        padded[:, 1:-1] = cols.T
        flat = padded.reshape(-1)
        col, k = np.divmod(np.flatnonzero(flat[1:] != flat[:-1]) + 1, bh + 2)
        found.append((x0 + c0 + col) * h + (y0 + k - 1))  # column-major index in the image
    full = np.concatenate(found) if found else np.zeros(0, np.int64)
    # a run that ends at the bottom row and goes on at the top of the next column: one run
    dup = np.flatnonzero(full[1:] == full[:-1])
    full = np.delete(full, np.concatenate([dup, dup + 1]))
    full = full[full < h * w]  # a run that ends with the image has no end toggle
    counts = np.diff(np.concatenate([[0], full, [h * w]]))
    rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts.tolist()}, h, w)
    return {"size": [h, w], "counts": rle["counts"].decode("ascii")}


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


def iou(a: list[dict], b: list[dict]) -> np.ndarray:
    """(len(a), len(b)) IoU of encoded masks of one size, computed on the runs (no mask is decoded)."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    if len({tuple(r["size"]) for r in (*a, *b)}) > 1:  # masks of another frame size never overlap
        return np.array([[iou([x], [y])[0, 0] if list(x["size"]) == list(y["size"]) else 0.0 for y in b] for x in a])

    def coco(rles: list[dict]) -> list[dict]:
        return [{"size": [int(v) for v in r["size"]], "counts": _bytes(r["counts"])} for r in rles]

    return np.asarray(mask_utils.iou(coco(a), coco(b), [0] * len(b)), dtype=np.float64).reshape(len(a), len(b))


def _bytes(counts: str | bytes) -> bytes:
    return counts.encode("ascii") if isinstance(counts, str) else counts
