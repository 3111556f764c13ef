"""A reviewer's skin group is marked ``reviewed``; a person a reviewer adds is ``not measured``
(source null), and ``ParsingDataset`` derives it from the reviewed labels."""

from __future__ import annotations

import numpy as np
from synthetic_labels import labelled_row

from m2fp_batch.annotate import rle
from m2fp_batch.labels import skin_tone_source


def test_reviewer_group_is_reviewed_and_an_added_person_is_not_measured():
    import fiftyone as fo

    from m2fp_batch.review.export import reviewed_row

    row = labelled_row("img", "/nowhere/img.png", (120, 160), 2, seed=3)
    h, w = row["height"], row["width"]
    first = row["persons"][0]
    x0, y0, x1, y1 = first["bbox"]
    kept = fo.Detection(
        label="person",
        bounding_box=[x0 / w, y0 / h, (x1 - x0) / w, (y1 - y0) / h],
        mask=rle.decode(first["mask"])[y0:y1, x0:x1],
        person_id=0,
        confidence=float(first["score"]),
        skin_group="dark",  # the reviewer's call (the job measured "light")
    )
    added = fo.Detection(
        label="person",
        bounding_box=[0.75, 0.5, 0.2, 0.4],
        mask=np.ones((48, 32), bool),
        confidence=None,
    )
    people = fo.Detections(detections=[kept, added])
    sample = fo.Sample(filepath="/nowhere/img.png", people=people, parsing=None, person_parts=None)
    sample.tags.append("reviewed")
    out = reviewed_row(sample, row)
    assert row["persons"][0]["skin_tone"]["group"] == "light" and skin_tone_source(row["persons"][0]["skin_tone"])
    tones = [p["skin_tone"] for p in out["persons"]]
    assert tones[0]["group"] == "dark" and tones[0]["source"] == "reviewed"
    assert skin_tone_source(tones[0]) == "reviewed"
    assert tones[1]["group"] == "unknown" and tones[1]["source"] is None and skin_tone_source(tones[1]) is None
    assert out["skin_tone_counts"]["dark"] == 1 and out["review_edited"] is True
