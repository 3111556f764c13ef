"""Exports of an output with video frames: cihp and coco hold the frames (their pixels read from the
video, under safe unique names), cvat-mask their masks, and vip the VIP layout with a person's human
id the same in every frame of its track; photos are skipped from vip and counted."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from PIL import Image
from video_labels import video_output

from m2fp_batch.cli import main
from m2fp_batch.data import ParsingDataset
from m2fp_batch.formats import cihp, vip
from m2fp_batch.labels import is_frame, label_maps, row_pixels
from m2fp_batch.labels.layout import safe_name
from m2fp_batch.storage import Filesystems

SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_JPEG_ERROR = 4.0  # mean absolute difference of a JPEG (quality 95) from its pixels


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    return video_output(tmp_path_factory.mktemp("video_labels"))


def _export(src, out, fmt, capsys) -> dict:
    assert main(["export", str(src), "--format", fmt, "--out", str(out)]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _png(path):
    with Image.open(path) as im:
        return np.asarray(im)


def _jpeg_close(path, pixels) -> None:
    with Image.open(io.BytesIO(path.read_bytes())) as im:
        jpeg = np.asarray(im.convert("RGB"), np.float64)
    assert jpeg.shape == pixels.shape and np.abs(jpeg - pixels).mean() < MAX_JPEG_ERROR


def test_cihp_holds_the_frames_under_safe_unique_names(output, tmp_path, capsys):
    src, rows = output
    summary = _export(src, tmp_path / "cihp", "cihp", capsys)
    assert (summary["images"], summary["skipped_errors"], summary["skipped_rejected"]) == (len(rows), 1, 1)
    ids = cihp.read_ids(tmp_path / "cihp", "train")
    assert len(ids) == len(set(ids)) == len(rows) and all(SAFE.match(n) for n in ids)
    meta, fss = cihp.read_meta(tmp_path / "cihp", "train"), Filesystems()
    for row in rows:
        name = safe_name(row["image_id"])
        rec = meta[name]
        assert rec["image_id"] == row["image_id"] and rec.get("frame_index") == row.get("frame_index")
        assert [p["track_id"] for p in rec["persons"]] == [p.get("track_id") for p in row["persons"]]
        np.testing.assert_array_equal(
            _png(tmp_path / "cihp" / cihp.CATEGORY_DIR / f"{name}.png"), label_maps(row).semantic
        )
        _jpeg_close(tmp_path / "cihp" / cihp.IMAGE_DIR / f"{name}.jpg", row_pixels(row, fss))
    back = ParsingDataset(tmp_path / "cihp")  # read back: the frames keep their video, index and tracks
    s = back[back.image_ids.index("A#f000010")]
    assert (s["video_id"], s["frame_index"], s["track_ids"]) == ("A", 10, [1, 0])


def test_coco_writes_each_frame_beside_the_json(output, tmp_path, capsys):
    src, rows = output
    summary = _export(src, tmp_path / "coco", "coco", capsys)
    assert summary["images"] == len(rows) and summary["unreadable_images"] == []
    doc = json.loads((tmp_path / "coco" / "train.json").read_text())
    frames = [im for im in doc["images"] if "video_id" in im]
    assert len(frames) == sum(is_frame(r) for r in rows)
    names = [im["file_name"] for im in frames]
    assert len(set(names)) == len(names) and all(SAFE.match(n.split("/", 1)[1]) for n in names)
    by_id, fss = {r["image_id"]: r for r in rows}, Filesystems()
    for im in frames:
        row = by_id[im["m2fp_image_id"]]
        assert (im["video_id"], im["frame_index"], im["video_uri"]) == (row["video_id"], row["frame_index"], row["uri"])
        _jpeg_close(tmp_path / "coco" / im["file_name"], row_pixels(row, fss))
    tracks = {a["image_id"]: [] for a in doc["annotations"]}
    for a in doc["annotations"]:
        if "attributes" in a:
            tracks[a["image_id"]].append(a["attributes"].get("track_id"))
    ten = next(im["id"] for im in frames if im["m2fp_image_id"] == "A#f000010")
    assert tracks[ten] == [1, 0]
    back = ParsingDataset(tmp_path / "coco" / "train.json")
    s = back[back.image_ids.index("A#f000010")]
    assert (s["video_id"], s["frame_index"], s["track_ids"]) == ("A", 10, [1, 0])
    np.testing.assert_array_equal(s["semantic"], label_maps(by_id["A#f000010"]).semantic)


def test_cvat_names_frames_safely(output, tmp_path, capsys):
    src, rows = output
    assert _export(src, tmp_path / "cvat", "cvat-mask", capsys)["images"] == len(rows)
    names = (tmp_path / "cvat" / "ImageSets" / "Segmentation" / "default.txt").read_text().split()
    assert sorted(names) == sorted(safe_name(r["image_id"]) for r in rows) and all(SAFE.match(n) for n in names)


def test_vip_layout_maps_and_human_ids_follow_the_tracks(output, tmp_path, capsys):
    src, rows = output
    out = tmp_path / "vip"
    summary = _export(src, out, "vip", capsys)
    frames = [r for r in rows if is_frame(r)]
    assert (summary["images"], summary["videos"], summary["skipped_photos"]) == (len(frames), 2, 1)
    assert (out / vip.LISTS_DIR / "train_videos.txt").read_text().split() == ["A", "B"]
    listed = (out / vip.LISTS_DIR / "train_id.txt").read_text().split()
    assert listed == ["A/000000000000", "A/000000000010", "A/000000000020", "B/000000000000", "B/000000000005"]
    fss = Filesystems()
    for row in frames:
        name = f"{row['video_id']}/{row['frame_index']:012d}"
        ann = out / vip.ANNOTATIONS_DIR
        maps = label_maps(row)
        np.testing.assert_array_equal(_png(ann / cihp.CATEGORY_DIR / f"{name}.png"), maps.semantic)
        humans, parts = _png(ann / cihp.HUMAN_DIR / f"{name}.png"), _png(ann / cihp.INSTANCE_DIR / f"{name}.png")
        np.testing.assert_array_equal(parts, maps.parts)
        for k, p in enumerate(row["persons"]):  # person k of the frame is its track's human id, in every frame
            assert np.all(humans[maps.humans == k + 1] == p["track_id"] + 1)
        assert np.all(humans[maps.humans == 0] == 0)
        lines = (ann / cihp.INSTANCE_DIR / f"{name}.txt").read_text().splitlines()
        expected = [
            f"{i.instance_id} {i.label_id} {row['persons'][i.person_id]['track_id'] + 1}" for i in maps.instances
        ]
        assert lines == expected
        _jpeg_close(out / vip.IMAGE_DIR / f"{name}.jpg", row_pixels(row, fss))
    meta = [json.loads(line) for line in (out / "train_meta.jsonl").read_text().splitlines()]
    assert sorted(m["id"] for m in meta) == listed


def test_vip_gives_a_person_without_a_track_an_id_of_its_own(output, tmp_path, capsys):
    from synthetic_labels import frame_row, write_output

    _, rows = output
    a = next(r for r in rows if r.get("video_id") == "A")["uri"]
    job = write_output(
        tmp_path / "job",
        [frame_row(a, "A", 0, 10, (120, 160), [0, None]), frame_row(a, "A", 10, 10, (120, 160), [None, 0])],
    )
    out = tmp_path / "vip"
    _export(job, out, "vip", capsys)
    ids = [
        sorted(set(np.unique(_png(out / vip.ANNOTATIONS_DIR / cihp.HUMAN_DIR / f"A/{i:012d}.png"))) - {0})
        for i in (0, 10)
    ]
    assert ids == [[1, 2], [1, 3]]  # track 0 is 1 in both; the two untracked people are 2 and 3, not one identity
