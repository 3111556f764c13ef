"""Per-person part statistics: a constructed person with known geometry, and real parses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from m2fp_batch.annotate.parts import mask_bbox, person_parts, semantic_class_scores, semantic_classes


@dataclass
class _Person:
    bbox: tuple[int, int, int, int]
    mask: np.ndarray
    part_map: np.ndarray


def test_constructed_person():
    # a 10x8 person at x0=4, y0=2: face rows 0-2 (label 13), torso rows 3-9 (label 5); two holes
    mask = np.ones((10, 8), bool)
    mask[9, 7] = mask[0, 0] = False
    part_map = np.where(np.arange(10)[:, None] < 3, 13, 5).repeat(8, axis=1).astype(np.uint8)
    part_map[~mask] = 0
    part_map[5, 5] = 0  # a background pixel inside the person
    score = np.zeros((30, 30), np.float32)
    score[2:12, 4:12] = np.linspace(0.1, 0.9, 80).reshape(10, 8)
    stats = person_parts(_Person((4, 2, 12, 12), mask, part_map), score)
    assert [s.label_id for s in stats] == [5, 13]
    torso, face = stats
    assert face.area == 3 * 8 - 1 and torso.area == 7 * 8 - 2
    assert face.bbox == (4, 2, 12, 5) and torso.bbox == (4, 5, 12, 12)
    assert face.fraction == pytest.approx(face.area / mask.sum())
    assert face.mask.shape == (3, 8) and face.mask.sum() == face.area
    sel = (part_map == 13) & mask
    assert face.score == pytest.approx(float(score[2:12, 4:12][sel].mean()))
    assert person_parts(_Person((4, 2, 12, 12), mask, part_map))[0].score is None


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="do not match bbox"):
        person_parts(_Person((0, 0, 3, 3), np.ones((2, 2), bool), np.ones((2, 2), np.uint8)))


def test_helpers():
    assert mask_bbox(np.zeros((4, 4), bool)) is None
    m = np.zeros((6, 9), bool)
    m[2:4, 3:8] = True
    assert mask_bbox(m) == (3, 2, 8, 4)
    sem = np.array([[0, 2, 2], [5, 0, 2]], np.uint8)
    assert semantic_classes(sem) == [(2, 3), (5, 1)]


def test_real_parse_is_consistent(tiny_parser, astronaut):
    r = tiny_parser.parse_one(astronaut)
    assert r.persons
    for person in r.persons:
        stats = person_parts(person, r.semantic_score)
        labelled = int((person.part_map[person.mask] > 0).sum())
        assert sum(s.area for s in stats) == labelled <= person.area
        assert sum(s.fraction for s in stats) == pytest.approx(labelled / person.area)
        x0, y0, x1, y1 = person.bbox
        full = person.full_mask(r.image_size)
        for s in stats:
            bx0, by0, bx1, by1 = s.bbox
            assert x0 <= bx0 < bx1 <= x1 and y0 <= by0 < by1 <= y1
            part_full = np.zeros(r.image_size, bool)
            part_full[by0:by1, bx0:bx1] = s.mask
            # the part's pixels are the person's pixels of that class in the image's semantic map
            np.testing.assert_array_equal(part_full, full & (r.semantic == s.label_id))
            assert 0.0 <= s.score <= 1.0


def test_semantic_class_scores_are_means_over_each_class():
    rng = np.random.default_rng(1)
    sem = rng.integers(0, 5, (30, 40)).astype(np.uint8)
    sem[sem == 3] = 4  # class 3 absent
    score = rng.random((30, 40)).astype(np.float32)
    got = semantic_class_scores(sem, score)
    assert sorted(got) == [1, 2, 4]
    for c, v in got.items():
        assert v == pytest.approx(float(score[sem == c].astype(np.float64).mean()), rel=1e-12)
