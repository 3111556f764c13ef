"""The region rules of Label Studio pull and CVAT pull on rows with overlapping people (no server needed)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from synthetic_labels import labelled_row

from m2fp_batch.annotate import ls_rle, rle
from m2fp_batch.formats import cvat
from m2fp_batch.formats.cvat_pull import item_persons
from m2fp_batch.labels import decode_mask, decode_persons
from m2fp_batch.labelstudio import project as lsp
from m2fp_batch.labelstudio.pull import AnnotationError, annotation_persons, reviewed_row

SHAPE = (180, 240)


@pytest.fixture(scope="module")
def row() -> dict:
    """Three people; person 0's first part reaches under person 1 (pixels the instance maps cannot show)."""
    r = labelled_row("people", "/photos/people.jpg", SHAPE, people=3, seed=1)
    p0, p1 = r["persons"][0], r["persons"][1]
    under = decode_mask(p1["mask"])
    ys, xs = np.nonzero(under)
    block = np.zeros(SHAPE, bool)
    block[ys[0] : ys[0] + 6, xs[0] : xs[0] + 6] = True
    block &= under
    p0["parts"][0]["mask"] = rle.encode(decode_mask(p0["parts"][0]["mask"]) | block)
    p0["mask"] = rle.encode(decode_mask(p0["mask"]) | block)
    return r


def prediction(row: dict) -> list[dict]:
    return lsp.prediction_result(decode_persons(row), SHAPE)


def test_an_unchanged_annotation_is_the_job_row(row):
    task = {"id": 7, "annotations": [{"id": 1, "result": prediction(row), "completed_by": 1, "updated_at": "t"}]}
    out = reviewed_row(row, task, {1: "a@b.c"})
    assert (out["review_status"], out["review_edited"], out["review_by"]) == ("reviewed", False, "a@b.c")
    assert out["persons"] == row["persons"] and out["semantic"] == row["semantic"]


def test_new_regions_join_by_overlap_or_form_a_person(row):
    result = prediction(row)
    part = next(r for r in result if lsp.parse_region_id(r["id"])[1] is not None)
    person, label_id = lsp.parse_region_id(part["id"])
    part["id"] = "aB3xYz"  # an id Label Studio gave: the part joins the Human region it overlaps most
    corner = np.zeros(SHAPE, bool)
    corner[:5, :5] = True  # no person there
    result.append(lsp.brush_region("Zq9", "Hat", corner, SHAPE, None))
    persons = annotation_persons(row, result)
    assert len(persons) == len(row["persons"]) + 1
    assert persons[person]["parts"] == row["persons"][person]["parts"]
    added = persons[-1]
    assert added["score"] == 1.0 and added["skin_tone"]["group"] == "unknown"
    assert [q["label"] for q in added["parts"]] == ["Hat"] and np.array_equal(decode_mask(added["mask"]), corner)


def test_a_deleted_human_region_is_a_deleted_person(row):
    result = [r for r in prediction(row) if r["id"] != lsp.region_id(0) and not r["id"].startswith("p0c")]
    persons = annotation_persons(row, result)
    assert len(persons) == len(row["persons"]) - 1
    assert [p["mask"] for p in persons] == [p["mask"] for p in row["persons"][1:]]


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda r: r["value"].update(brushlabels=["Tail"]), "not one of the project's 20 labels"),
        (lambda r: r.update(original_width=SHAPE[1] + 1), "the image"),
        (lambda r: r["value"].update(rle=[1, 2, 3]), "truncated"),
        (lambda r: r["value"].update(rle=ls_rle.encode(np.ones((4, 4), bool))), "another image size"),
    ],
)
def test_unreadable_regions_are_annotation_errors(row, change, match):
    result = copy.deepcopy(prediction(row))
    change(result[1])
    with pytest.raises(AnnotationError, match=match):
        annotation_persons(row, result)


def test_rejected_and_skipped(row):
    verdict = {"from_name": lsp.VERDICT, "type": "choices", "value": {"choices": ["rejected"]}}
    for annotation in ({"id": 1, "result": [verdict]}, {"id": 2, "result": [], "was_cancelled": True}):
        out = reviewed_row(row, {"id": 1, "annotations": [annotation]}, {})
        assert out["review_status"] == "rejected" and out["persons"] == row["persons"]
    assert reviewed_row(row, {"id": 1, "annotations": []}, {})["review_status"] == "unreviewed"
    assert reviewed_row(row, None, {})["review_status"] == "not_in_dataset"


def test_cvat_item_round_trip_keeps_hidden_pixels(row, tmp_path):
    """Overlapping people: the export shows only visible pixels; reading it back keeps the job's masks."""
    cvat.write_labelmap(tmp_path)
    name = cvat.write_item(tmp_path, row)
    item = cvat.read_item(tmp_path, name, cvat.read_labelmap(tmp_path))
    assert item_persons(row, item) == row["persons"]
