"""Exports of a reviewed output: rejected and error rows skipped and counted, missing photos named."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from skimage import data
from synthetic_labels import error_row, labelled_row, write_output

from m2fp_batch.cli import main
from m2fp_batch.formats import cihp
from m2fp_batch.labels.layout import EXPORT_FILE, shard_name


def _reviewed(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, img in (("a", data.astronaut()), ("c", data.chelsea())):
        Image.fromarray(img).save(photos / f"{name}.jpg", quality=90)
    rows = [
        labelled_row("a", str(photos / "a.jpg"), (512, 512), 2),
        labelled_row("c", str(photos / "c.jpg"), (300, 451), 1),
        error_row("e", str(photos / "e.jpg")),
    ]
    out = write_output(tmp_path / "out", rows)
    reviewed = tmp_path / "reviewed"
    reviewed.mkdir()
    table = pq.read_table(out / shard_name(0)).append_column(
        "review_status", pa.array(["reviewed", "rejected", "unreviewed"])
    )
    pq.write_table(table, reviewed / "shard-00000.parquet")
    (reviewed / EXPORT_FILE).write_text(json.dumps({"files": ["shard-00000.parquet"]}))
    return reviewed, photos


def test_rejected_and_error_rows_are_skipped_and_counted(tmp_path, capsys):
    reviewed, _ = _reviewed(tmp_path)
    for fmt in ("cihp", "coco"):
        assert main(["export", str(reviewed), "--format", fmt, "--out", str(tmp_path / fmt)]) == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert (summary["rows"], summary["images"], summary["persons"]) == (3, 1, 2)
        assert (summary["skipped_errors"], summary["skipped_rejected"]) == (1, 1)
        assert json.loads((tmp_path / fmt / "export.json").read_text()) == summary
    assert cihp.read_ids(tmp_path / "cihp", "train") == ["a"]
    coco = json.loads((tmp_path / "coco" / "train.json").read_text())
    assert [i["m2fp_image_id"] for i in coco["images"]] == ["a"]
    assert {a["image_id"] for a in coco["annotations"]} == {1}


def test_a_missing_photo_is_named_and_the_rest_exported(tmp_path, capsys):
    reviewed, photos = _reviewed(tmp_path)
    (photos / "a.jpg").unlink()
    assert main(["export", str(reviewed), "--format", "cihp", "--out", str(tmp_path / "cihp")]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1])["unreadable_images"] == ["a"]
    assert "could not be read" in captured.err and "Traceback" not in captured.err
    assert cihp.read_ids(tmp_path / "cihp", "train") == []
