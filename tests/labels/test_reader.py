"""The shared reader: which files count, how they are read, and the label maps of a row."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from pycocotools import mask as mask_utils
from skimage import data
from synthetic_labels import commit_marker, error_row, labelled_row, write_output

from m2fp_batch.annotate import rle
from m2fp_batch.labels import LabelsError, label_maps, open_labels, semantic_map
from m2fp_batch.labels.layout import EXPORT_FILE, shard_name, stats_name
from m2fp_batch.labels.maps import MaskSizeError, paint


@pytest.fixture()
def output(tmp_path) -> Path:
    rows = [labelled_row("a", "/nowhere/a.jpg", (120, 160), 3), error_row("b", "/nowhere/b.jpg")]
    return write_output(tmp_path / "out", rows)


def test_paint_equals_pycocotools_on_random_and_photo_masks():
    rng = np.random.default_rng(0)
    photo = data.coffee()[..., 0]
    masks = [rng.random((37, 53)) < 0.5, np.zeros((5, 7), bool), np.ones((4, 3), bool), photo > 128, photo < 40]
    for m in masks:
        enc = rle.encode(m)
        ref = mask_utils.decode({"size": enc["size"], "counts": enc["counts"].encode()}).astype(bool)
        np.testing.assert_array_equal(paint(m.shape, [([enc], [7])]) == 7, ref)
    with pytest.raises(MaskSizeError, match="differs from the image size"):
        paint((10, 10), [([rle.encode(np.ones((5, 5), bool))], [1])])


def test_label_maps_follow_the_row(output):
    row = pq.read_table(output / shard_name(0)).to_pylist()[0]
    maps = label_maps(row)
    assert maps.semantic.dtype == np.uint8 and maps.humans.dtype == maps.parts.dtype == np.int64
    for k, p in enumerate(row["persons"]):
        np.testing.assert_array_equal(maps.humans == k + 1, rle.decode(p["mask"]))
    for inst in maps.instances:
        part = next(q for q in row["persons"][inst.person_id]["parts"] if q["label_id"] == inst.label_id)
        np.testing.assert_array_equal(maps.parts == inst.instance_id, rle.decode(part["mask"]))
        assert np.all(maps.semantic[maps.parts == inst.instance_id] == inst.label_id)
    assert maps.skin_tones == ["light", "medium", "dark"]
    np.testing.assert_array_equal(semantic_map(row), maps.semantic)


def test_only_committed_shards_are_read(output):
    shutil.copy(output / shard_name(0), output / shard_name(1))  # no stats marker: not committed
    shutil.copy(output / shard_name(0), output / f".{shard_name(2)}.abcd1234.tmp")  # being written
    src = open_labels(output)
    assert src.kind == "job" and [Path(f).name for f in src.files] == [shard_name(0)]
    assert [r["image_id"] for _, r in src.iter_rows()] == ["a", "b"]
    (output / stats_name(1)).write_text(json.dumps({"shard": 1}))  # a marker of no job: still not committed
    assert len(open_labels(output).files) == 1
    (output / stats_name(1)).write_text(json.dumps(commit_marker(output, 1)))
    assert len(open_labels(output).files) == 2
    with open(output / shard_name(1), "ab") as f:  # the Parquet changed after its marker: not committed
        f.write(b"x")
    assert len(open_labels(output).files) == 1


def test_copied_shards_and_export_reviewed_dirs(output, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(output / shard_name(0), copy / shard_name(0))  # shards copied without _stats/
    assert open_labels(copy).kind == "shards" and len(open_labels(copy).files) == 1
    reviewed = tmp_path / "reviewed"
    reviewed.mkdir()
    shutil.copy(output / shard_name(0), reviewed / "shard-00000-000.parquet")
    shutil.copy(output / shard_name(0), reviewed / "leftover.parquet")  # not listed: not read
    (reviewed / EXPORT_FILE).write_text(json.dumps({"files": ["/elsewhere/shard-00000-000.parquet"]}))
    src = open_labels(reviewed)
    assert src.kind == "export-reviewed" and [Path(f).name for f in src.files] == ["shard-00000-000.parquet"]


def test_clear_errors(output, tmp_path):
    with pytest.raises(LabelsError, match="does not exist or is not a directory"):
        open_labels(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LabelsError, match="no shard-NNNNN.parquet"):
        open_labels(tmp_path / "empty")
    table = pq.read_table(output / shard_name(0))
    pq.write_table(table.drop_columns(["image_id"]), output / shard_name(0))
    (output / stats_name(0)).write_text(json.dumps(commit_marker(output, 0)))
    with pytest.raises(LabelsError, match="not a job output file"):
        list(open_labels(output).iter_rows())
    rows = table.to_pylist()
    rows[0]["schema_version"] = 99
    pq.write_table(table.from_pylist(rows, schema=table.schema), output / shard_name(0))
    (output / stats_name(0)).write_text(json.dumps(commit_marker(output, 0)))
    with pytest.raises(LabelsError, match="schema_version 99"):
        list(open_labels(output).iter_rows())
