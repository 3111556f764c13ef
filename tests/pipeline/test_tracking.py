"""The track stage on a shard's rows: ground-truth silhouettes as the job writes them (encoded masks,
a skin tone each), two videos and a photo in one shard, each video's frames tracked apart."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from skimage.draw import disk, ellipse

from m2fp_batch.annotate import rle
from m2fp_batch.pipeline.tracking import add_tracks, track_skin_tone
from m2fp_batch.schema import SCHEMA

H, W = 120, 160


def _mask(cx: float) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[ellipse(70, cx, 26, 10, shape=(H, W))] = True
    m[disk((38, cx), 7, shape=(H, W))] = True
    return m


def _person(pid: int, cx: float, ita: float | None) -> dict:
    return {"person_id": pid, "mask": rle.encode(_mask(cx)), "skin_tone": {"ita": ita, "group": "x"}}


def _table(rows: list[dict]) -> pa.Table:
    fields = [SCHEMA.field(n) for n in ("video_id", "frame_index", "persons")]
    return pa.Table.from_pylist(rows, schema=pa.schema(fields))


def test_each_video_is_tracked_apart_and_each_track_gets_one_tone():
    # video v: A walks right from x=30, B stands at x=120 (listed first in odd frames); w: one person
    rows = []
    for f in range(6):
        a, b = _person(0, 30 + 6 * f, [50.0, 52.0, 54.0, 56.0, 58.0, None][f]), _person(1, 120, -20.0 + f)
        rows.append({"video_id": "v", "frame_index": 10 * f, "persons": [a, b] if f % 2 == 0 else [b, a]})
    rows.append({"video_id": None, "frame_index": None, "persons": [_person(0, 30, 20.0)]})  # a photo
    rows += [{"video_id": "w", "frame_index": f, "persons": [_person(0, 30, 30.0)]} for f in range(2)]
    rows.append({"video_id": "v", "frame_index": None, "persons": None})  # v's error row: not a frame
    out = add_tracks(_table(rows)).column("persons").to_pylist()
    ids = [[p["track_id"] for p in persons] for persons in out[:6]]
    assert ids == [[0, 1], [1, 0], [0, 1], [1, 0], [0, 1], [1, 0]]
    tone_a = out[0][0]["track_skin_tone"]
    assert tone_a == pytest.approx({"ita": 54.0, "ita_spread": 4.0, "group": "light", "frames": 5})
    assert out[1][0]["track_skin_tone"]["group"] == "dark" and out[1][0]["track_skin_tone"]["frames"] == 6
    assert out[6][0]["track_id"] is None and out[6][0]["track_skin_tone"] is None  # the photo
    assert [p[0]["track_id"] for p in out[7:9]] == [0, 0]  # w counts its own tracks from 0
    assert out[9] is None


def test_a_shard_without_frames_is_returned_as_it_is():
    table = _table([{"video_id": None, "frame_index": None, "persons": [_person(0, 30, 20.0)]}])
    assert add_tracks(table) is table


def test_track_skin_tone_of_no_known_frame_is_unknown():
    assert track_skin_tone([]) == {"ita": None, "ita_spread": None, "group": "unknown", "frames": 0}
    assert track_skin_tone([5.0, 15.0, 25.0])["group"] == "medium"


def test_rle_iou_matches_the_masks_and_is_zero_across_frame_sizes():
    a, b = _mask(30), _mask(36)
    want = (a & b).sum() / (a | b).sum()
    assert rle.iou([rle.encode(a)], [rle.encode(b)])[0, 0] == pytest.approx(want)
    small = rle.encode(np.ones((10, 10), bool))
    assert rle.iou([rle.encode(a), small], [small])[:, 0].tolist() == [0.0, 1.0]
