"""The review-priority formula (pure functions, no FiftyOne)."""

from __future__ import annotations

import numpy as np
import pytest

from m2fp_batch.review.priority import (
    count_components,
    parse_agreement,
    person_anomalies,
    review_priority,
    weighted_part_score,
)


def test_clean_sample_scores_zero_and_formula_matches_doc():
    assert review_priority([1.0, 1.0], [1.0, 1.0], 0.0).score == 0.0
    p = review_priority([0.9, 0.4], [0.8, None], 0.25, ["two_faces:1"])
    # by hand, with the documented weights 0.6, 0.5, 0.7, 0.5: u_person 1 - 0.4 = 0.6, u_part 1 - 0.8 = 0.2
    # keep = (1 - 0.36) * (1 - 0.1) * (1 - 0.175) * (1 - 0.5) = 0.64 * 0.9 * 0.825 * 0.5 = 0.2376
    assert p.score == pytest.approx(0.7624, abs=1e-12)
    assert (p.u_person, p.u_part, p.u_disagree) == pytest.approx((0.6, 0.2, 0.25))
    assert "two_faces:1" in p.reasons() and any(r.startswith("low_person_score") for r in p.reasons())


@pytest.mark.parametrize("which", ["person", "part", "disagree", "anomaly"])
def test_each_signal_raises_priority(which):
    base = dict(person_scores=[0.8], person_part_scores=[0.8], disagreement=0.2, anomalies=[])
    worse = dict(base)
    if which == "person":
        worse["person_scores"] = [0.3]
    elif which == "part":
        worse["person_part_scores"] = [0.3]
    elif which == "disagree":
        worse["disagreement"] = 0.7
    else:
        worse["anomalies"] = ["no_parts:0"]
    assert review_priority(**worse).score > review_priority(**base).score


def test_documented_anchor_values():
    assert review_priority([1.0], [1.0], 0.0, ["two_faces:0"]).score == pytest.approx(0.5)
    assert review_priority([1.0], [1.0], 0.0, ["two_faces:0", "no_parts:1"]).score == pytest.approx(0.75)
    assert review_priority([1 / 6], [1.0], 0.0).score == pytest.approx(0.5)
    assert review_priority([0.0], [1.0], 0.0).score == pytest.approx(0.6)
    assert review_priority([1.0], [0.0], 0.0).score == pytest.approx(0.5)
    assert review_priority([], [], 1.0).score == pytest.approx(0.7)


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan")])
def test_out_of_range_inputs_raise(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        review_priority([bad], [], 0.0)
    with pytest.raises(ValueError):
        review_priority([], [], bad)


def test_weighted_part_score_skips_missing_scores():
    assert weighted_part_score([100, 300], [1.0, 0.5]) == pytest.approx(0.625)
    assert weighted_part_score([100, 300], [None, 0.5]) == pytest.approx(0.5)
    assert weighted_part_score([10], [None]) is None


def test_parse_agreement():
    sem = np.zeros((10, 10), np.uint8)
    parts = np.zeros_like(sem)
    assert parse_agreement(sem, parts) == 1.0
    sem[:5] = 2  # 50 px of hair
    parts[:5, :5] = 2  # the person covers 25 of them
    parts[8:, :] = 13  # and 20 px of face the parse calls background
    assert parse_agreement(sem, parts) == pytest.approx(25 / 70)
    with pytest.raises(ValueError, match="shapes"):
        parse_agreement(sem, parts[:5])


def test_two_faces_and_no_parts():
    face = np.zeros((40, 40), bool)
    face[2:10, 2:10] = True
    assert count_components(face, 20) == 1
    assert person_anomalies(3, [2, 13], face) == []
    face[30:36, 30:36] = True  # a second face of 36 px
    assert person_anomalies(3, [2, 13], face) == ["two_faces:3"]
    face[30:36, 30:36] = False
    face[30:33, 30:33] = True  # 9 px: a speck, not a face
    assert person_anomalies(3, [2, 13], face) == []
    assert person_anomalies(0, [], None) == ["no_parts:0"]
