"""The review of a REAL job output over photos and videos: the photos are image samples, each video is
one sample of the video dataset ``<name>-videos`` with its sampled frames' labels on FiftyOne frames
``frame_index + 1``, the masks equal to the rows', each person's ``index`` its ``track_id``."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from m2fp_batch.annotate import rle

from .fo_helpers import VFR_PTS_MS


def _rows(out: Path) -> list[dict]:
    return [r for f in sorted(out.glob("shard-*.parquet")) for r in pq.read_table(f).to_pylist()]


def _semantic(row: dict) -> np.ndarray:
    m = np.zeros((row["height"], row["width"]), np.uint8)
    for c in row["semantic"]:
        m[rle.decode(c["mask"])] = c["label_id"]
    return m


@pytest.fixture()
def video_output(video_job_output, tmp_path) -> Path:
    dst = tmp_path / "out"
    shutil.copytree(video_job_output, dst)
    return dst


def _check_frames(sample, frame_rows: list[dict]) -> None:
    """Each sampled frame's labels on frame ``frame_index + 1``: the parse mask, the people with their tracks."""
    from m2fp_batch.review.masks import read_png

    assert sorted(sample.frames.keys()) == sorted(r["frame_index"] + 1 for r in frame_rows)
    for row in frame_rows:
        frame = sample.frames[row["frame_index"] + 1]
        assert frame.image_id == row["image_id"] and frame.pts_seconds == pytest.approx(row["pts_seconds"])
        np.testing.assert_array_equal(read_png(frame.parsing.mask_path), _semantic(row))
        dets = frame.people.detections
        assert len(dets) == len(row["persons"]) > 0
        for det, person in zip(dets, row["persons"], strict=True):
            assert det.index == det.track_id == person["track_id"] is not None
            assert det.person_id == person["person_id"]
            assert det.track_skin_group == person["track_skin_tone"]["group"]
            x0, y0, x1, y1 = person["bbox"]
            np.testing.assert_array_equal(read_png(det.mask_path) > 0, rle.decode(person["mask"])[y0:y1, x0:x1])


def test_review_splits_photos_and_videos(video_output):
    from m2fp_batch.review.build import build_review_dataset
    from m2fp_batch.review.export import ReviewExportError, export_reviewed
    from m2fp_batch.review.fo import fo

    rows = _rows(video_output)
    photos = [r for r in rows if r["video_id"] is None]
    videos = {r["video_id"]: r["uri"] for r in rows if r["video_id"] is not None}
    assert len(videos) == 4 and len(photos) == 6  # 3 photos, corrupt.jpg, photo_named.mov, text.webm
    ds, stats = build_review_dataset(video_output, "rv-video", workers=1)
    assert (stats.added, stats.videos_added, stats.video_dataset) == (len(photos), 4, "rv-video-videos")
    assert stats.frames == sum(r["frame_index"] is not None for r in rows) == 3 + 4 + 1 + 1
    # the image dataset: the photos only, as image samples whatever their names (photo_named.mov, text.webm)
    assert ds.media_type == "image" and sorted(ds.values("image_id")) == sorted(r["image_id"] for r in photos)
    assert {Path(p).name for p in ds.values("filepath")} >= {"photo_named.mov", "text.webm"}
    assert ds.info["m2fp_batch"]["video_dataset"] == "rv-video-videos"

    vds = fo.load_dataset("rv-video-videos")
    assert vds.media_type == "video" and sorted(vds.values("video_id")) == sorted(videos)
    assert vds.info["m2fp_batch"]["image_dataset"] == "rv-video"
    by_name = {Path(s.filepath).name: s for s in vds}
    for s in vds:
        assert s.filepath == str(Path(videos[s.video_id]).resolve())
        _check_frames(s, [r for r in rows if r["video_id"] == s.video_id and r["frame_index"] is not None])
    # a variable frame rate: the frames sampled at 0, 1, 2, 3 s are the 1st, 5th, 8th and 10th decoded
    assert sorted(by_name["vfr.mkv"].frames.keys()) == [1, 5, 8, 10]
    vfr = by_name["vfr.mkv"].frames
    assert [vfr[n].pts_seconds for n in (1, 5, 8, 10)] == pytest.approx(
        [VFR_PTS_MS[n - 1] / 1000 for n in (1, 5, 8, 10)]
    )
    assert sorted(by_name["clip.mp4"].frames.keys()) == [1, 11, 21]
    # a phone video: metadata in the upright size the frames were labelled at (ffprobe gives 160x120)
    phone = by_name["phone.mp4"].metadata
    assert (phone.frame_width, phone.frame_height, phone.total_frame_count) == (120, 160, 10)
    # a truncated video: its frames before the damage, the video sample in error with the position
    bad = by_name["truncated.mkv"]
    assert (bad.status, bad.error_kind, "error" in bad.tags) == ("error", "video_error", True)
    assert bad.frames_sampled == len(bad.frames) == 1 and bad.error_position_s > 0
    assert by_name["clip.mp4"].status == "ok" and by_name["clip.mp4"].track_ids
    assert set(vds.list_saved_views()) == {"errors", "review-queue"}
    assert len(vds.load_saved_view("errors")) == 1
    assert vds.mask_targets["frames.parsing"][2] == "Hair"
    with pytest.raises(ReviewExportError, match="is a video dataset"):  # one sentence, not a traceback
        export_reviewed("rv-video-videos", video_output.parent / "reviewed")


def test_rerun_replaces_videos_and_keeps_reviewed_ones(video_output):
    from m2fp_batch.review.build import build_review_dataset
    from m2fp_batch.review.fo import fo

    build_review_dataset(video_output, "rv-video-rerun", workers=1)
    vds = fo.load_dataset("rv-video-rerun-videos")
    ids = dict(zip(*vds.values(["filepath", "id"]), strict=True))
    by_name = {Path(s.filepath).name: s for s in vds}
    by_name["clip.mp4"].tags += ["reviewed", "mine"]
    by_name["clip.mp4"].save()
    by_name["vfr.mkv"].tags += ["mine"]
    by_name["vfr.mkv"].save()
    _, stats = build_review_dataset(video_output, "rv-video-rerun", workers=1)
    assert (stats.videos_added, stats.videos_updated, stats.kept_reviewed) == (0, 3, 3)  # clip's 3 frame rows
    vds.reload()
    assert len(vds) == 4 and len(set(vds.values("video_id"))) == 4 and sum(len(s.frames) for s in vds) == 9
    now = {Path(s.filepath).name: s for s in vds}
    assert now["clip.mp4"].id == ids[by_name["clip.mp4"].filepath]  # the reviewed video was left as it was
    assert {"reviewed", "mine"} <= set(now["clip.mp4"].tags)
    assert now["vfr.mkv"].id != ids[by_name["vfr.mkv"].filepath]  # replaced, with the reviewer's own tag
    assert "mine" in now["vfr.mkv"].tags and "skin:unknown" in now["vfr.mkv"].tags


def test_review_of_videos_without_ffprobe_is_one_sentence(video_output, tmp_path, monkeypatch, capsys):
    from m2fp_batch.cli import main

    monkeypatch.setenv("PATH", str(tmp_path))  # no ffprobe there
    assert main(["review", str(video_output), "--dataset", "rv-video-noffprobe"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("m2fp-batch review: ") and "ffprobe" in last and "make browser-deps" in last
