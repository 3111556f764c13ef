"""ParsingDataset on a job output with video frames: a frame's image is read from its video, its sample
carries the video, frame and track ids, and ``videos()`` groups the frames of each video in order."""

from __future__ import annotations

import numpy as np
import pytest
from video_labels import video_output

from m2fp_batch.data import ParsingDataset
from m2fp_batch.labels import label_maps, row_pixels
from m2fp_batch.storage import Filesystems

KEYS = ("semantic", "humans", "parts")


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    return video_output(tmp_path_factory.mktemp("video_labels"))


def test_a_frame_sample_is_the_frame_of_its_video_and_its_maps(output):
    out, rows = output
    ds = ParsingDataset(out)
    assert ds.image_ids == [r["image_id"] for r in rows]  # the error and the rejected rows are no samples
    fss = Filesystems()
    for i, row in enumerate(rows):
        s = ds[i]
        np.testing.assert_array_equal(s["image"], row_pixels(row, fss))
        maps = label_maps(row)
        for k in KEYS:
            np.testing.assert_array_equal(s[k], getattr(maps, k))
        assert s["video_id"] == row.get("video_id") and s["frame_index"] == row.get("frame_index")
        assert s["track_ids"] == [p.get("track_id") for p in row["persons"]]
    photo = ds[ds.image_ids.index("photo")]
    assert photo["video_id"] is None and photo["frame_index"] is None and photo["track_ids"] == [None, None]
    frame = ds[ds.image_ids.index("A#f000010")]
    assert frame["image"].shape == (120, 160, 3) and frame["track_ids"] == [1, 0]


def test_videos_group_the_frames_in_frame_order_without_the_photos(output):
    ds = ParsingDataset(output[0])
    groups = ds.videos()
    assert list(groups) == ["A", "B"]
    assert [ds.image_ids[i] for i in groups["A"]] == ["A#f000000", "A#f000010", "A#f000020"]
    assert [ds.image_ids[i] for i in groups["B"]] == ["B#f000000", "B#f000005"]
    assert ds.image_ids.index("photo") not in {i for idx in groups.values() for i in idx}
