"""m2fp_batch.tracks on ground-truth person masks: crossing, leaving and re-entering, order of detections."""

from __future__ import annotations

import numpy as np
from skimage.draw import disk, ellipse

from m2fp_batch.annotate.tracks import TrackSettings, iou_matrix, track_people

H, W = 120, 160


def person(cx: float, cy: float, scale: float = 1.0) -> np.ndarray:
    """A standing person's silhouette (head and body) centred at (cx, cy); clipped by the frame."""
    m = np.zeros((H, W), bool)
    m[ellipse(cy + 8 * scale, cx, 26 * scale, 10 * scale, shape=(H, W))] = True
    m[disk((cy - 24 * scale, cx), 7 * scale, shape=(H, W))] = True
    return m


def _shuffled(masks: list[np.ndarray], rng: np.random.Generator) -> tuple[list[np.ndarray], list[int]]:
    order = rng.permutation(len(masks))
    return [masks[k] for k in order], [int(k) for k in order]


def _identities(frames_truth: list[list[np.ndarray]]) -> list[dict]:
    """person (by truth index) -> track id, frame by frame, with the detections in a random order."""
    rng = np.random.default_rng(0)
    shuffled = [_shuffled(masks, rng) for masks in frames_truth]
    ids = track_people([s[0] for s in shuffled])
    return [dict(zip(order, fids, strict=True)) for (_, order), fids in zip(shuffled, ids, strict=True)]


def test_iou_matrix():
    a, b = person(40, 60), person(44, 60)
    iou = iou_matrix([a, b], [a, b, np.zeros_like(a)])
    assert iou[0, 0] == iou[1, 1] == 1.0 and 0.3 < iou[0, 1] < 1.0 and iou[0, 2] == 0.0
    assert iou_matrix([], [a]).shape == (0, 1)


def test_crossing_people_keep_their_ids():
    frames = []
    for i in range(30):  # A walks right in front of B, who walks left and is partly hidden as they cross
        a, b = person(35 + 3 * i, 55), person(125 - 3 * i, 70, 1.1)
        frames.append([a, b & ~a])
    ids = _identities(frames)
    assert [f == {0: ids[0][0], 1: ids[0][1]} for f in ids] == [True] * 30
    assert ids[0][0] != ids[0][1]


def test_leaving_and_reentering_within_the_gap_keeps_the_id():
    frames = []
    for x in (130, 134, 138, 142, 146, 150, 154, 180, 180, 156, 152, 148, 144):
        # B walks out on the right for 2 sampled frames and comes back; A stands still
        masks = [person(40, 60)]
        if x < 165:
            masks.append(person(x, 60))
        frames.append(masks)
    ids = track_people(frames, TrackSettings(max_gap=2))
    assert {f[0] for f in ids} == {0}
    assert {f[1] for f in ids if len(f) == 2} == {1}


def test_a_gap_longer_than_k_starts_a_new_track():
    frames = [[person(150, 60)], [], [], [], [person(150, 60)]]
    assert track_people(frames, TrackSettings(max_gap=2)) == [[0], [], [], [], [1]]
    assert track_people(frames, TrackSettings(max_gap=3)) == [[0], [], [], [], [0]]


def test_two_people_side_by_side_do_not_merge_and_new_people_get_new_ids():
    frames = [[person(40, 60)], [person(40, 60), person(100, 60)], [person(100, 62), person(42, 60)]]
    assert track_people(frames) == [[0], [0, 1], [1, 0]]


def test_thresholds_are_applied():
    a, far = person(40, 60), person(60, 60)
    iou = float(iou_matrix([a], [far])[0, 0])
    above = TrackSettings(iou_threshold=iou + 0.01, second_iou_threshold=iou + 0.01)
    assert track_people([[a], [far]], above) == [[0], [1]]
    assert track_people([[a], [far]], TrackSettings(iou_threshold=iou - 0.01)) == [[0], [0]]
    # the second round: the only track and person left over, above its threshold
    assert track_people([[a], [far]], TrackSettings(iou_threshold=iou + 0.01, second_iou_threshold=iou - 0.01)) == [
        [0],
        [0],
    ]


def test_a_half_hidden_person_keeps_the_id_in_the_second_round():
    """B walks in front of A: A shows less of the body than in the frame before, below the first
    threshold, and keeps the id because B took the first round."""
    a0, b0, a1, b1 = person(60, 58), person(66, 60), person(62, 58), person(63, 60)
    frames = [[a0 & ~b0, b0], [a1 & ~b1, b1]]
    iou = iou_matrix(frames[0], frames[1])
    assert 0.1 <= iou[0, 0] < 0.3 and iou[1, 1] >= 0.3 and iou[0, 1] < iou[0, 0]  # the case it is for
    assert track_people(frames) == [[0, 1], [0, 1]]
    assert track_people(frames, TrackSettings(second_iou_threshold=0.3)) == [[0, 1], [2, 1]]
