"""The review dataset built from a REAL job output (tiny model, 3 photos + 1 corrupt file)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from synthetic_labels import commit_marker

from m2fp_batch.annotate import rle
from m2fp_batch.annotate.palette import CIHP_CLASSES, hex_color
from m2fp_batch.labels.layout import stats_name
from m2fp_batch.schema import SCHEMA_VERSION


def _rows(out: Path) -> dict[str, dict]:
    return {r["image_id"]: r for r in pq.read_table(out / "shard-00000.parquet").to_pylist()}


def _semantic(row: dict) -> np.ndarray:
    m = np.zeros((row["height"], row["width"]), np.uint8)
    for c in row["semantic"]:
        m[rle.decode(c["mask"])] = c["label_id"]
    return m


def test_build_fields_tags_and_rerun_does_not_duplicate(fresh_output):
    from m2fp_batch.review.build import build_review_dataset
    from m2fp_batch.review.masks import read_png

    rows = _rows(fresh_output)
    ds, stats = build_review_dataset(fresh_output, "rv-build")
    assert (stats.rows, stats.added, stats.updated, stats.errors) == (4, 4, 0, 1)
    assert sorted(ds.values("image_id")) == sorted(rows)

    for iid, row in rows.items():
        s = ds.one({"image_id": iid})
        assert s.status == row["status"]
        if row["status"] == "error":
            assert "error" in s.tags and s.error == row["error"] and s.parsing is None
            continue
        assert "error" not in s.tags
        # the parse: a PNG file next to the job output, equal to the Parquet's semantic map
        assert s.parsing.mask is None and Path(s.parsing.mask_path).is_file()
        assert str(fresh_output / "_review" / "masks") in s.parsing.mask_path
        np.testing.assert_array_equal(read_png(s.parsing.mask_path), _semantic(row))
        # the people: one detection per person, instance mask in a file, score as confidence
        dets = s.people.detections
        assert len(dets) == row["num_persons"] == len(row["persons"])
        for det, person in zip(dets, row["persons"], strict=True):
            assert det.mask is None and Path(det.mask_path).is_file()
            assert det.confidence == pytest.approx(person["score"])
            x0, y0, x1, y1 = person["bbox"]
            full = rle.decode(person["mask"])
            np.testing.assert_array_equal(read_png(det.mask_path) > 0, full[y0:y1, x0:x1])
            assert det.parts == [p["label"] for p in person["parts"]]
            skin = person["skin_tone"]  # schema v2+: the job's per-person skin tone
            assert det.skin_group == skin["group"] and det.ita_category == skin["ita_category"]
            assert det.ita == (None if skin["ita"] is None else pytest.approx(skin["ita"]))
            assert det.hue == (None if skin["hue"] is None else pytest.approx(skin["hue"]))
            assert det.skin_source == "measured"  # the job's own estimate
        # per-part stats over the people
        for label in {p["label"] for person in row["persons"] for p in person["parts"]}:
            area = sum(p["area"] for person in row["persons"] for p in person["parts"] if p["label"] == label)
            assert s.part_stats[label.replace("-", "_")].area == area
        assert 0.0 <= s.review_priority < 1.0
        assert s.min_person_score == pytest.approx(min(p["score"] for p in row["persons"]))
        assert ("low_confidence" in s.tags) == (s.min_person_score < 0.5 or (s.min_part_score or 1) < 0.5)
        groups = {p["skin_tone"]["group"] for p in row["persons"]}
        assert s.skin_tone_available is True and s.schema_version == row["schema_version"] == SCHEMA_VERSION
        assert {t for t in s.tags if t.startswith("skin:")} == {f"skin:{g}" for g in groups}
        assert ("brightened" in s.tags) == bool(row["brightened"])
        assert {g: s.skin_tone_counts[g] for g in row["skin_tone_counts"]} == row["skin_tone_counts"]

    # mask targets and the App colours are the project's palette
    assert ds.mask_targets["parsing"][CIHP_CLASSES.index("Hair")] == "Hair"
    assert ds.default_mask_targets[13] == "Face"
    colors = {c["intTarget"]: c["color"] for c in ds.app_config.color_scheme.fields[0]["maskTargetsColors"]}
    assert colors[2] == hex_color(2) == "#ff0000"
    assert set(ds.app_config.active_fields.paths) == {"parsing", "people"}
    # saved views
    views = set(ds.list_saved_views())
    assert {"errors", "low-confidence", "review-queue", "skin-light", "skin-medium", "skin-dark"} <= views
    for group in ("light", "medium", "dark", "unknown"):
        expected = sorted(
            i for i, r in rows.items() if any(p["skin_tone"]["group"] == group for p in r["persons"] or [])
        )
        assert sorted(ds.load_saved_view(f"skin-{group}").values("image_id")) == expected
    assert ds.load_saved_view("errors").values("status") == ["error"]
    queue = ds.load_saved_view("review-queue").values("review_priority")
    assert len(queue) == 3 and queue == sorted(queue, reverse=True)

    # a rerun updates in place: same sample ids, nothing duplicated; reviewers' tags survive
    ids = dict(zip(*ds.values(["image_id", "id"]), strict=True))
    one = ds.one({"image_id": next(i for i, r in rows.items() if r["status"] == "ok")})
    one.tags.append("needs-second-look")
    one.save()
    ds2, stats2 = build_review_dataset(fresh_output, "rv-build")
    assert (stats2.added, stats2.updated, len(ds2)) == (0, 4, 4)
    assert dict(zip(*ds2.values(["image_id", "id"]), strict=True)) == ids
    assert "needs-second-look" in ds2.one({"image_id": one.image_id}).tags
    assert ds2.count_values("status") == {"ok": 3, "error": 1}
    with pytest.raises(Exception, match="duplicate key"):
        ds2.add_sample(ds2.first().copy())


def test_no_mask_inline_in_mongodb(fresh_output):
    from m2fp_batch.review.build import build_review_dataset

    ds, _ = build_review_dataset(fresh_output, "rv-inline")
    from bson import json_util

    for doc in ds._sample_collection.find({}):
        text = json_util.dumps(doc)
        assert len(text) < 20_000, f"sample document of {len(text)} bytes"
        assert doc.get("parsing") is None or doc["parsing"].get("mask") is None
        for det in (doc.get("people") or {}).get("detections", []):
            assert det.get("mask") is None and det["mask_path"].endswith(".png")


def test_reviewed_samples_keep_their_labels_on_rerun(fresh_output):
    import fiftyone as fo

    from m2fp_batch.review.build import build_review_dataset

    ds, _ = build_review_dataset(fresh_output, "rv-keep")
    s = ds.match(fo.ViewField("num_persons") > 0).first()
    n = len(s.people.detections)
    s.people.detections = s.people.detections[:-1]
    s.tags.append("reviewed")
    s.save()
    ds, stats = build_review_dataset(fresh_output, "rv-keep")
    assert stats.kept_reviewed == 1
    assert len(ds.one({"image_id": s.image_id}).people.detections) == n - 1
    ds, stats = build_review_dataset(fresh_output, "rv-keep", overwrite_reviewed=True)
    assert stats.kept_reviewed == 0
    assert len(ds.one({"image_id": s.image_id}).people.detections) == n


def test_cli_bad_input_is_a_clear_error(tmp_path, capsys):
    from m2fp_batch.cli import main

    (tmp_path / "empty").mkdir()
    assert main(["review", str(tmp_path / "empty"), "--dataset", "rv-bad"]) == 2
    assert "no .parquet files" in capsys.readouterr().err
    assert main(["review", str(tmp_path / "missing"), "--dataset", "rv-bad"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_build_prints_stats(fresh_output, capsys):
    from m2fp_batch.cli import main

    assert main(["review", str(fresh_output), "--dataset", "rv-cli", "--mask-dir", str(fresh_output.parent / "m")]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["rows"] == 4 and out["added"] == 4 and out["schema_versions"] == [SCHEMA_VERSION]
    assert (fresh_output.parent / "m").is_dir()


def test_schema_v1_output_reads_without_inventing_skin_tone(fresh_output):
    """An output of the v1 job (no skin tone, no brightness): the fields say "not measured"."""
    import pyarrow as pa

    from m2fp_batch.review.build import build_review_dataset

    table = pq.read_table(fresh_output / "shard-00000.parquet")
    drop = ["skin_tone_groups", "skin_tone_counts", "brightened", "brightness_factor"]
    table = table.drop_columns(drop).set_column(0, "schema_version", pa.array([1] * table.num_rows, pa.int32()))
    persons = [
        None if ps is None else [{k: v for k, v in p.items() if k != "skin_tone"} for p in ps]
        for ps in table.column("persons").to_pylist()
    ]
    v1_person = pa.list_(pa.struct([f for f in table.schema.field("persons").type.value_type if f.name != "skin_tone"]))
    table = table.set_column(table.schema.get_field_index("persons"), "persons", pa.array(persons, v1_person))
    pq.write_table(table, fresh_output / "shard-00000.parquet")
    (fresh_output / stats_name(0)).write_text(json.dumps(commit_marker(fresh_output, 0)))  # committed again

    ds, stats = build_review_dataset(fresh_output, "rv-v1")
    assert stats.schema_versions == {1}
    for s in ds.match({"status": "ok"}):
        assert s.skin_tone_available is False and s.skin_groups is None and s.brightened is None
        assert not any(t.startswith("skin:") or t == "brightened" for t in s.tags)
        assert all(d.skin_group is None and d.ita is None for d in s.people.detections)
    assert len(ds.load_saved_view("skin-unknown")) == 0


def test_unknown_schema_version_is_refused(fresh_output):
    import pyarrow as pa

    from m2fp_batch.review.build import build_review_dataset
    from m2fp_batch.review.masks import ReviewInputError

    table = pq.read_table(fresh_output / "shard-00000.parquet")
    table = table.set_column(0, "schema_version", pa.array([99] * table.num_rows, pa.int32()))
    pq.write_table(table, fresh_output / "shard-00000.parquet")
    (fresh_output / stats_name(0)).write_text(json.dumps(commit_marker(fresh_output, 0)))  # committed again
    with pytest.raises(ReviewInputError, match="schema_version 99"):
        build_review_dataset(fresh_output, "rv-v99")
