"""The pixels a row labels: a photo's file decoded, or a video frame read again from its video.

Every reader that needs a row's image (``ParsingDataset``, the exports, review) reads it here, so
a frame row (``frame_index`` set, schema v5) is never taken for a photo: its ``uri`` is the video.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from m2fp_batch.decode import DEFAULT_MAX_PIXELS, decode_image
from m2fp_batch.storage import DEFAULT_MAX_BYTES, Filesystems
from m2fp_batch.video import read_frame

__all__ = ["is_frame", "row_pixels"]


def is_frame(row: Mapping[str, Any]) -> bool:
    """True for a sampled video frame's row (False for photos and rows before schema v5)."""
    return row.get("frame_index") is not None


def row_pixels(row: Mapping[str, Any], filesystems: Filesystems, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """(H, W, 3) uint8 RGB of what ``row`` labels: the photo at ``uri``, or the frame of the video at
    ``uri`` presented at ``pts_seconds`` (seek to the key frame before it, decode forward).

    Raises:
        OSError: the file cannot be read.
        decode.ImageError: not an image the guarded decoder reads.
        ValueError: no such frame in the video (it changed since the job), or not a video.
    """
    uri = row["uri"]
    if is_frame(row):
        with filesystems.open_seekable(uri) as f:
            return read_frame(f, float(row["pts_seconds"]), max_pixels)
    return decode_image(filesystems.read_bytes(uri, DEFAULT_MAX_BYTES), max_pixels=max_pixels)
