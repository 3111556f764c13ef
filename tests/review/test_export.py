"""export-reviewed: edits made through the FiftyOne SDK (as the App / load_annotations make them)
come back as Parquet rows in the job's schema with review_status."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from m2fp_batch.annotate import rle
from m2fp_batch.schema import SCHEMA


def _semantic(row: dict) -> np.ndarray:
    m = np.zeros((row["height"], row["width"]), np.uint8)
    for c in row["semantic"]:
        m[rle.decode(c["mask"])] = c["label_id"]
    return m


def test_export_round_trips_an_edited_label(fresh_output, tmp_path):
    import fiftyone as fo

    from m2fp_batch.cli import main
    from m2fp_batch.review.build import build_review_dataset

    original = {r["image_id"]: r for r in pq.read_table(fresh_output / "shard-00000.parquet").to_pylist()}
    ds, _ = build_review_dataset(fresh_output, "rv-export")
    ok = ds.match(fo.ViewField("num_persons") >= 2).sort_by("image_id")
    edited, rejected = ok.first(), ds.match(fo.ViewField("status") == "ok").exclude([ok.first().id]).first()

    # the reviewer paints a hair patch into the parse (an inline mask, as load_annotations writes it),
    # deletes the last person, and marks the sample reviewed; another sample is rejected
    mask = edited.parsing.get_mask().copy()
    mask[:20, :30] = 2
    edited.parsing = fo.Segmentation(mask=mask)
    removed = edited.people.detections.pop()
    edited.tags.append("reviewed")
    edited.save()
    rejected.tags.append("rejected")
    rejected.save()

    out = tmp_path / "reviewed"
    assert main(["export-reviewed", "rv-export", "--out", str(out)]) == 0
    table = pq.read_table(out / "shard-00000.parquet")
    assert table.schema.names == [*SCHEMA.names, "review_status", "review_edited", "review_by", "review_time"]
    assert table.schema.metadata == SCHEMA.metadata
    rows = {r["image_id"]: r for r in table.to_pylist()}
    assert set(rows) == set(original)
    assert json.loads((out / "_export.json").read_text())["by_status"] == {
        "reviewed": 1,
        "rejected": 1,
        "unreviewed": 2,
    }

    e, o = rows[edited.image_id], original[edited.image_id]
    assert (e["review_status"], e["review_edited"]) == ("reviewed", True)
    np.testing.assert_array_equal(_semantic(e), mask)
    assert e["num_persons"] == o["num_persons"] - 1 == len(e["persons"])
    # the image's skin-tone summary follows the persons that remain
    assert sum(e["skin_tone_counts"].values()) == e["num_persons"]
    assert e["skin_tone_counts"][removed.skin_group] == o["skin_tone_counts"][removed.skin_group] - 1
    kept = [p for p in o["persons"] if p["person_id"] != removed.person_id]
    for new, old in zip(e["persons"], kept, strict=True):
        assert new["mask"] == old["mask"] and new["bbox"] == old["bbox"]
        assert new["score"] == pytest.approx(old["score"])
        assert [(q["label_id"], q["mask"], q["score"]) for q in new["parts"]] == [
            (q["label_id"], q["mask"], q["score"]) for q in old["parts"]
        ]
    # the inline mask was moved to a PNG file: nothing inline stays in MongoDB
    again = ds.one({"image_id": edited.image_id})
    assert again.parsing.mask is None and again.parsing.mask_path.endswith(".edited.png")

    # untouched rows round-trip exactly
    for iid, r in rows.items():
        if iid == edited.image_id:
            continue
        assert r["review_status"] == ("rejected" if iid == rejected.image_id else "unreviewed")
        assert r["review_edited"] is False
        for k in SCHEMA.names:
            assert r[k] == original[iid][k], (iid, k)


def test_export_refuses_unknown_dataset_and_out_inside_job(fresh_output, tmp_path, capsys):
    from m2fp_batch.cli import main
    from m2fp_batch.review.build import build_review_dataset

    assert main(["export-reviewed", "rv-nope", "--out", str(tmp_path / "x")]) == 2
    assert "no FiftyOne dataset named 'rv-nope'" in capsys.readouterr().err
    build_review_dataset(fresh_output, "rv-inside")
    assert main(["export-reviewed", "rv-inside", "--out", str(fresh_output / "reviewed")]) == 2
    assert "inside the job output" in capsys.readouterr().err
