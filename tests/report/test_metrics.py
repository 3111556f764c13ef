"""Report numbers as pure functions: per-group IoU with exact known values, counts, part stats."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from m2fp_batch.report import metrics


def test_group_iou_known_values():
    # 10 x 20 image: a light person in the left half, a dark person in the right half.
    gt = np.zeros((10, 20), np.uint8)
    gt[2:8, 2:8] = 13  # Face, left
    gt[:, 10:15] = 5  # UpperClothes, right: half of the right box
    gt[0, 0] = 255  # ignored label
    pred = gt.copy()
    pred[0, 0] = 2  # a wrong pixel under the ignore label does not count
    pred[:, 10:20] = 5  # right: the model calls the whole box UpperClothes
    boxes = [(0, 0, 10, 10), (10, 0, 20, 10)]
    confs = metrics.image_group_confusions(pred, gt, boxes, ["light", "dark"])
    assert confs["light"].sum() == 99 and confs["dark"].sum() == 100
    ious, summary = metrics.miou_table(confs)
    assert ious.loc["Face", "light"] == 1.0 and ious.loc["Background", "light"] == 1.0
    assert ious.loc["UpperClothes", "dark"] == 0.5  # 50 right / 100 predicted
    assert ious.loc["Background", "dark"] == 0.0  # 50 missed, none predicted
    assert np.isnan(ious.loc["Face", "dark"])  # absent from both: not in the mean
    s = summary.set_index("group")
    assert s.loc["light", "mIoU"] == 1.0
    assert s.loc["dark", "mIoU"] == 0.25
    assert s.loc["light", "gap"] == 0.0 and s.loc["dark", "gap"] == 0.75
    assert list(summary["group"]) == ["light", "dark"]


def test_regions_union_boxes_and_overlap_counts_for_each_group():
    regions = metrics.group_regions((4, 6), [(0, 0, 2, 2), (1, 1, 3, 3), (2, 0, 6, 4)], ["light", "light", "dark"])
    assert regions["light"].sum() == 4 + 4 - 1
    assert regions["dark"].sum() == 16
    assert (regions["light"] & regions["dark"]).sum() == 2  # overlapping pixels count for both groups


def test_iou_accumulates_over_images():
    a = metrics.confusion(np.array([[1, 1]]), np.array([[1, 0]]), np.ones((1, 2), bool))
    b = metrics.confusion(np.array([[0, 0]]), np.array([[0, 0]]), np.ones((1, 2), bool))
    iou = metrics.iou_from_confusion(a + b)
    assert iou[1] == 0.5 and iou[0] == 2 / 3


def test_confusion_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.confusion(np.zeros((2, 2)), np.zeros((2, 3)), np.ones((2, 3), bool))


def _tables():
    images = pd.DataFrame(
        {
            "image_id": ["a", "b", "c", "d"],
            "status": ["ok", "ok", "ok", "error"],
            "num_persons": [2, 1, 0, None],
            "brightness_factor": [1.0, 1.5, 1.2, np.nan],
        }
    )
    persons = pd.DataFrame(
        {
            "image_id": ["a", "a", "b"],
            "group": ["light", "dark", "dark"],
            "ita_category": ["very light", "brown", "dark"],
            "brightness_factor": [1.0, 1.0, 1.5],
        }
    )
    parts = pd.DataFrame(
        {
            "person_index": [0, 1, 1, 2],
            "group": ["light", "dark", "dark", "dark"],
            "label": ["Face", "Face", "Hair", "Face"],
            "fraction": [0.2, 0.1, 0.3, 0.5],
            "score": [0.9, 0.6, 0.5, 0.8],
        }
    )
    return images, persons, parts


def test_counts_low_light_and_people_per_image():
    images, persons, parts = _tables()
    assert metrics.group_counts(persons).to_dict() == {"light": 1, "medium": 0, "dark": 2, "unknown": 0}
    assert metrics.ita_category_counts(persons)["brown"] == 1
    assert metrics.unknown_rate(persons) == 0.0
    low = metrics.low_light(images, persons)
    assert low["images"] == pytest.approx(2 / 3)
    assert low["factors"] == {1.0: 1, 1.2: 1, 1.5: 1}
    assert low["by_group"] == {"light": 0.0, "medium": None, "dark": 0.5, "unknown": None}
    assert metrics.people_per_image(images).to_dict() == {0: 1, 1: 1, 2: 1}
    assert metrics.groups_present(persons, images).to_dict() == {"light+dark": 1, "dark": 1, "no people": 1}
    assert metrics.low_light(images, persons, enabled=False) is None  # factors say nothing when it was off
    assert metrics.low_light(images, persons, enabled=True) == low
    off = images.assign(brightness_factor=np.nan)
    assert metrics.low_light(off, persons.assign(brightness_factor=np.nan)) is None


def test_part_stats_average_over_all_people_of_the_group():
    images, persons, parts = _tables()
    frac, score = metrics.part_stats_by_group(persons, parts)
    assert list(frac.index) == ["Hair", "Face"]  # CIHP class order
    assert frac.loc["Face", "dark"] == pytest.approx((0.1 + 0.5) / 2)
    assert frac.loc["Hair", "dark"] == pytest.approx(0.3 / 2)  # the person without hair counts 0
    assert frac.loc["Hair", "light"] == 0.0
    assert score.loc["Face", "dark"] == pytest.approx(0.7)
    assert np.isnan(score.loc["Hair", "light"])
