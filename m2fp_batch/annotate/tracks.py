"""Person tracks across a video's sampled frames: mask IoU, Hungarian assignment, a gap of up to K frames.

Each frame's people are matched to the tracks seen in the last ``max_gap + 1`` sampled frames by the
IoU of their masks with the track's last mask, in two rounds (as ByteTrack matches in two):
:func:`scipy.optimize.linear_sum_assignment` picks the assignment of largest total IoU, and a pair
below ``iou_threshold`` is no match; then the tracks and people left over are matched the same way
with the lower ``second_iou_threshold``. A person that matches no track starts a new one. Track ids
count from 0 in order of first appearance, so they are stable within a video (and equal on a rerun:
the input is the frames in order).

The threshold (0.3) is the usual one of IoU trackers: consecutive sampled frames of a walking person
(at 1 frame a second) overlap by far more, two different people side by side by far less. The second
round (0.1) keeps a person whose shape changed, e.g. half hidden while another walks in front of
them: the one in front is matched in the first round, and the hidden one is the only candidate left.
A person fully hidden or out of the frame for up to ``max_gap`` sampled frames keeps their id when
they reappear where they were last seen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "TRACK_IOU_THRESHOLD",
    "TRACK_MAX_GAP",
    "TRACK_SECOND_IOU_THRESHOLD",
    "TrackSettings",
    "iou_matrix",
    "track_people",
]

TRACK_IOU_THRESHOLD = 0.3
TRACK_SECOND_IOU_THRESHOLD = 0.1
TRACK_MAX_GAP = 2


@dataclass(frozen=True)
class TrackSettings:
    """How people are matched across frames: least mask IoU of a match (and of a match between the
    tracks and people the first round left), and how many sampled frames a track may miss (hidden,
    out of the frame) and still continue."""

    iou_threshold: float = TRACK_IOU_THRESHOLD
    max_gap: int = TRACK_MAX_GAP
    second_iou_threshold: float = TRACK_SECOND_IOU_THRESHOLD


def iou_matrix(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
    """(len(a), len(b)) IoU of boolean masks of one size."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    fa = np.stack([m.reshape(-1) for m in a]).astype(np.float32)
    fb = np.stack([m.reshape(-1) for m in b]).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


IoU = Callable[[Sequence[Any], Sequence[Any]], np.ndarray]


@dataclass
class _Track:
    track_id: int
    mask: Any
    last_frame: int


def _assign(iou: np.ndarray, rows: list[int], cols: list[int], threshold: float) -> list[tuple[int, int]]:
    """(row, col) pairs of the largest-total-IoU assignment between ``rows`` and ``cols`` of ``iou``,
    pairs under ``threshold`` dropped."""
    from scipy.optimize import linear_sum_assignment

    if not rows or not cols:
        return []
    sub = iou[np.ix_(rows, cols)]
    r, c = linear_sum_assignment(sub, maximize=True)
    return [(rows[i], cols[j]) for i, j in zip(r, c, strict=True) if sub[i, j] >= threshold]


def _match(live: list[_Track], masks: Sequence[Any], settings: TrackSettings, iou_of: IoU) -> dict[int, _Track]:
    """Person index -> the live track it continues: the first round, then the leftovers (see the module)."""
    iou = iou_of([t.mask for t in live], masks)
    if iou.size == 0:
        return {}
    first = _assign(iou, list(range(len(live))), list(range(len(masks))), settings.iou_threshold)
    rows = [r for r in range(len(live)) if r not in {p[0] for p in first}]
    cols = [c for c in range(len(masks)) if c not in {p[1] for p in first}]
    second = _assign(iou, rows, cols, settings.second_iou_threshold)
    return {c: live[r] for r, c in first + second}


def track_people(
    frames: Sequence[Sequence[Any]], settings: TrackSettings = TrackSettings(), iou_of: IoU = iou_matrix
) -> list[list[int]]:
    """The track id of each person of each frame (``frames[i][j]``: frame i's person j's mask, frames
    in order of time); the result has the same shape. Masks are boolean arrays, or whatever ``iou_of``
    takes (:func:`m2fp_batch.annotate.rle.iou`: the job's encoded masks)."""
    tracks: list[_Track] = []
    out: list[list[int]] = []
    for i, masks in enumerate(frames):
        live = [t for t in tracks if i - t.last_frame <= settings.max_gap + 1]
        matched = _match(live, masks, settings, iou_of)
        ids = []
        for j, mask in enumerate(masks):
            track = matched.get(j)
            if track is None:
                track = _Track(len(tracks), mask, i)
                tracks.append(track)
            track.mask, track.last_frame = mask, i
            ids.append(track.track_id)
        out.append(ids)
    return out
