"""A video's rows, in the read stage: one row per sampled frame and an error row if decoding failed.

A frame's row is a photo's row to every later stage: its ``data`` is the frame's RGB pixels as a
binary PPM image (lossless, and written and read without compression work), its ``image_id`` the
video's id and the frame index (:func:`~m2fp_batch.video.frame_image_id`), its ``uri`` the
video's. The video columns (:data:`~m2fp_batch.schema.VIDEO_COLUMNS`) say which video and frame.

Exactly once, frame by frame: a video is one input of the listing, so it belongs to one shard, and
its rows are all written with that shard or not at all. How many rows a video gives is known only
when its decoding ends, so its last row carries :data:`INPUT_ROWS`, the video's row count; the
committer counts a video as done when that many of its rows have arrived (frames reach it in any
order, from any actor). Frames are yielded one behind decoding, so the last one can carry the count.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa

from m2fp_batch.schema import SCHEMA, VIDEO_COLUMNS
from m2fp_batch.video import SampledFrame, Sampling, VideoFailure, VideoInfo, frame_image_id, sample_frames

__all__ = ["INPUT_ROWS", "VIDEO_FIELDS", "ppm", "video_rows"]

# pipeline-internal column: on a video's last row, the number of rows the video gave (else null)
INPUT_ROWS = "input_rows"
VIDEO_FIELDS = {name: SCHEMA.field(name) for name in VIDEO_COLUMNS} | {INPUT_ROWS: pa.field(INPUT_ROWS, pa.int32())}


def ppm(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB as a binary PPM (P6) image: a header and the pixels as they are."""
    h, w = rgb.shape[:2]
    return b"P6\n%d %d\n255\n" % (w, h) + np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()


def _video_values(info: VideoInfo | None, video_id: str) -> dict[str, Any]:
    if info is None:
        return {"video_id": video_id}
    return {
        "video_id": video_id,
        "video_fps": info.fps,
        "video_width": info.width,
        "video_height": info.height,
        "video_duration_s": info.duration_s,
    }


def _row_table(key: pa.Table, row: dict[str, Any]) -> pa.Table:
    """One output row of the read stage: the video's listing row with ``row``'s columns."""
    table = key.set_column(key.schema.get_field_index("image_id"), "image_id", pa.array([row["image_id"]], pa.string()))
    table = (
        table.append_column("data", pa.array([row.get("data")], pa.large_binary()))
        .append_column("read_error", pa.array([row.get("read_error")], pa.string()))
        .append_column("read_error_kind", pa.array([row.get("read_error_kind")], pa.string()))
        .append_column("read_s", pa.array([row.get("read_s")], pa.float64()))
    )
    for name, field in VIDEO_FIELDS.items():
        table = table.append_column(field, pa.array([row.get(name)], field.type))
    return table


def video_rows(key: pa.Table, source: str | BinaryIO, sampling: Sampling, max_pixels: int) -> Iterator[pa.Table]:
    """The rows of the video whose listing row is ``key`` (one row), decoded from ``source`` (closed
    at the end); each yielded table is one row, so the read task holds one frame beyond FFmpeg's own."""
    video_id = key.column("image_id")[0].as_py()
    info, pending, count, t0 = None, None, 0, time.perf_counter()
    try:
        for item in sample_frames(source, sampling, max_pixels):
            if isinstance(item, VideoInfo):
                info = item
                continue
            if pending is not None:
                yield _row_table(key, pending)
            if isinstance(item, VideoFailure):
                message = f"{item.message} ({item.frames_before} frame(s) before it are rows)"
                pending = {"image_id": video_id, "read_error": message, "read_error_kind": item.kind}
                pending |= _video_values(info, video_id) | {"pts_seconds": item.position_s}
            else:
                pending = _frame_row(item, info, video_id, time.perf_counter() - t0)
            count += 1
            t0 = time.perf_counter()
    finally:
        if hasattr(source, "close"):
            source.close()
    if pending is not None:  # sample_frames always yields a frame or a failure
        yield _row_table(key, pending | {INPUT_ROWS: count})


def _frame_row(frame: SampledFrame, info: VideoInfo | None, video_id: str, seconds: float) -> dict[str, Any]:
    return _video_values(info, video_id) | {
        "image_id": frame_image_id(video_id, frame.frame_index),
        "data": ppm(frame.rgb),
        "read_s": seconds,
        "frame_index": frame.frame_index,
        "pts_seconds": frame.pts_seconds,
    }
