"""Person tracks, a stage keyed by video: when a shard commits, each of its videos' frames are
together in the driver (a video is one input, so it never spans shards, whichever actors labelled
its frames). Their people are matched across the sampled frames in order
(:func:`m2fp_batch.annotate.tracks.track_people`, on the encoded masks: nothing is decoded) and
each person gets ``track_id`` and the track's one skin tone (``track_skin_tone``: the median ITA
of the track's frames with a known tone, its interquartile range and the median's group).

The tracks are in the shard's own rows, written once with the shard: a rerun that labels the
shard again tracks it again, so resume stays the shard's commit rule and nothing is rewritten.
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from m2fp_batch.annotate.tracks import TrackSettings, track_people

__all__ = ["TRACKING", "add_tracks", "track_skin_tone"]

TRACKING = TrackSettings()  # IoU 0.3, a gap of up to 2 sampled frames (docs/video.md)


def track_skin_tone(itas: list[float]) -> dict[str, Any]:
    """One tone for a track from its frames' ITAs (known ones): median, interquartile range, group."""
    from m2fp_batch.annotate.skin_tone import ita_group

    if not itas:
        return {"ita": None, "ita_spread": None, "group": "unknown", "frames": 0}
    q1, median, q3 = np.percentile(np.asarray(itas, np.float64), [25, 50, 75])
    return {"ita": float(median), "ita_spread": float(q3 - q1), "group": ita_group(float(median)), "frames": len(itas)}


def _track_video(persons: list[list[dict] | None], settings: TrackSettings) -> None:
    """Set ``track_id`` and ``track_skin_tone`` on the people of one video's frames (in time order)."""
    from m2fp_batch.annotate import rle

    frames = [p or [] for p in persons]
    ids = track_people([[p["mask"] for p in people] for people in frames], settings, rle.iou)
    itas: dict[int, list[float]] = collections.defaultdict(list)
    for people, tids in zip(frames, ids, strict=True):
        for p, tid in zip(people, tids, strict=True):
            p["track_id"] = tid
            ita = (p.get("skin_tone") or {}).get("ita")
            if ita is not None and np.isfinite(ita):
                itas[tid].append(float(ita))
    tones = {tid: track_skin_tone(itas[tid]) for people in ids for tid in people}
    for people in frames:
        for p in people:
            p["track_skin_tone"] = tones[p["track_id"]]


def add_tracks(table: pa.Table, settings: TrackSettings = TRACKING) -> pa.Table:
    """``table`` (a shard's rows, each video's frames in frame order) with its videos' people tracked;
    a table without frames is returned as it is."""
    frame_rows = pc.and_(pc.is_valid(table.column("video_id")), pc.is_valid(table.column("frame_index")))
    if not pc.any(frame_rows).as_py():
        return table
    videos = table.column("video_id").to_pylist()
    is_frame = frame_rows.to_pylist()
    persons = table.column("persons").to_pylist()
    by_video: dict[str, list[int]] = collections.defaultdict(list)
    for i, (video, frame) in enumerate(zip(videos, is_frame, strict=True)):
        if frame:
            by_video[video].append(i)
    for rows in by_video.values():
        _track_video([persons[i] for i in rows], settings)
    index = table.schema.get_field_index("persons")
    return table.set_column(index, table.schema.field(index), pa.array(persons, table.schema.field(index).type))
