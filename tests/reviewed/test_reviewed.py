"""The reviewed layout package: no side effect on import, one finishing function, one summary, one set of words."""

from __future__ import annotations

import ast
import copy
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from synthetic_labels import labelled_row

from m2fp_batch import reviewed
from m2fp_batch.labels import decode_mask, semantic_map
from m2fp_batch.schema import NOT_IN_DATASET, REJECTED, REVIEW_STATUSES, REVIEWED, SCHEMA

ROOT = Path(__file__).resolve().parents[2]
SHAPE = (120, 160)


@pytest.fixture()
def row() -> dict:
    return labelled_row("two", "/photos/two.jpg", SHAPE, people=2, seed=4)


def test_importing_the_review_packages_sets_nothing_and_imports_no_fiftyone():
    code = (
        "import os, sys\n"
        "before = {k for k in os.environ if k.startswith('FIFTYONE_')}\n"
        "import m2fp_batch.reviewed, m2fp_batch.review, m2fp_batch.review.cli, m2fp_batch.review.export_cli\n"
        "import m2fp_batch.labelstudio.pull, m2fp_batch.formats.cvat_pull\n"
        "print(sorted({k for k in os.environ if k.startswith('FIFTYONE_')} - before), 'fiftyone' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIFTYONE_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["[]", "False"]


def test_a_verdict_without_labels_keeps_the_job_row(row):
    out = reviewed.finish_row(row, REJECTED, by="ana@example.org", time="2026-12-01T10:00:00Z")
    assert {k: out[k] for k in row} == row
    assert (out["review_status"], out["review_edited"], out["review_by"], out["review_time"]) == (
        REJECTED,
        False,
        "ana@example.org",
        "2026-12-01T10:00:00Z",
    )
    assert reviewed.finish_row(row, NOT_IN_DATASET)["review_by"] is None


def test_the_same_persons_are_not_an_edit(row):
    out = reviewed.finish_row(row, REVIEWED, copy.deepcopy(row["persons"]))
    assert out["review_edited"] is False and out["semantic"] == row["semantic"]


def test_a_removed_person_is_an_edit_and_leaves_the_map(row):
    gone = row["persons"][1]
    out = reviewed.finish_row(row, REVIEWED, [row["persons"][0]])
    assert out["review_edited"] is True and out["num_persons"] == 1
    sem = semantic_map(out)
    for part in gone["parts"]:  # every pixel the removed person's parts held in the job's map is background now
        held = decode_mask(part["mask"]) & (semantic_map(row) == part["label_id"])
        assert held.any() and not sem[held].any()
    assert sum(out["skin_tone_counts"].values()) == 1


def test_an_unknown_status_is_refused(row):
    with pytest.raises(ValueError, match="approved"):
        reviewed.finish_row(row, "approved")


def test_one_summary_counts_what_was_written(row, tmp_path):
    rows = [
        reviewed.finish_row(row, REVIEWED, [row["persons"][0]]),
        reviewed.finish_row({**row, "image_id": "b"}, NOT_IN_DATASET),
    ]
    summary = reviewed.ReviewedSummary(source="labels/", dest=str(tmp_path), details={"project": "p"})
    got = reviewed.write_reviewed(tmp_path, [("shard-00000.parquet", SCHEMA, rows)], {"tool": "t"}, summary=summary)
    assert got is summary
    assert (summary.rows, summary.by_status, summary.edited, summary.files) == (
        2,
        {REVIEWED: 1, NOT_IN_DATASET: 1},
        1,
        ["shard-00000.parquet"],
    )
    printed = summary.to_dict()
    assert (printed["source"], printed["dest"], printed["project"]) == ("labels/", str(tmp_path), "p")
    assert "out" not in printed and "details" not in printed
    on_disk = json.loads((tmp_path / "_export.json").read_text())
    assert on_disk["tool"] == "t" and on_disk["files"] == ["shard-00000.parquet"] and on_disk["rows"] == 2
    table = pq.read_table(tmp_path / "shard-00000.parquet")
    assert table.column("review_status").to_pylist() == [REVIEWED, NOT_IN_DATASET]


def test_the_old_path_warns_and_gives_the_same_objects():
    sys.modules.pop("m2fp_batch.review.reviewed", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from m2fp_batch.review import reviewed as old
    assert any(issubclass(w.category, DeprecationWarning) and "m2fp_batch.reviewed" in str(w.message) for w in caught)
    assert old.write_reviewed is reviewed.write_reviewed and old.STATUS_REJECTED == REJECTED
    assert old.REVIEW_STATUSES == REVIEW_STATUSES


def test_the_review_words_are_defined_once():
    """No module but schema.py binds a name to a review status's word or the column's name."""
    words = {*REVIEW_STATUSES, "review_status"}
    found = []
    for path in sorted((ROOT / "m2fp_batch").rglob("*.py")):
        if path.name == "schema.py" and path.parent.name == "m2fp_batch":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Constant):
                if node.value.value in words:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


def test_a_mask_of_the_semantic_map_round_trips(row):
    entries = reviewed.semantic_entries(semantic_map(row))
    assert [e["label_id"] for e in entries] == [s["label_id"] for s in row["semantic"]]
    assert all(np.array_equal(decode_mask(a["mask"]), decode_mask(b["mask"])) for a, b in zip(entries, row["semantic"]))
