"""Skin-tone estimator: synthetic faces in every Monk colour, thresholds, unknown, robustness."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from m2fp_batch.annotate.skin_tone import (
    MONK_LAB,
    MONK_RGB,
    SkinTone,
    estimate_skin_tone,
    ita_category,
    ita_degrees,
    ita_group,
    nearest_monk,
    person_skin_tone,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import skin_tone_confusion as synth  # noqa: E402


@pytest.fixture(scope="module")
def results():
    return synth.evaluate()


def test_mst_groups_from_their_own_ita():
    groups = [synth.true_group(m) for m in range(1, 11)]
    assert groups == ["light"] * 5 + ["medium"] + ["dark"] * 4


def test_group_right_in_at_least_90_percent_of_normal_light_cases(results):
    normal = [r for r in results if r[0].normal_light]
    assert len(normal) == 10 * len(synth.SEEDS) * len(synth.MILD_CASTS) * len(synth.BRIGHTNESS)
    assert synth.accuracy(normal) >= 0.90, synth.markdown(results)
    # every tone's group is right under neutral light at brightness 1.0, and no case is unknown
    for case, truth, pred in results:
        assert pred != "unknown"
        if case.cast == "neutral" and case.brightness == 1.0:
            assert pred == truth, case


def test_neutral_light_recovers_colour_and_monk():
    for monk in range(1, 11):
        image, _, mask = synth.render_face(MONK_RGB[monk - 1])
        tone = estimate_skin_tone(image, mask)
        lab = MONK_LAB[monk - 1]
        assert abs(tone.lab[0] - lab[0]) < 4.0, (monk, tone)
        assert abs(tone.monk - monk) <= 1, (monk, tone)
        assert tone.ita == pytest.approx(float(ita_degrees(tone.lab[0], tone.lab[2])))
        assert tone.ita_category == ita_category(tone.ita)
        assert 0.0 < tone.confidence <= 1.0


def test_erosion_and_trimming_reject_hair_and_highlight():
    image, skin, mask = synth.render_face(MONK_RGB[2], mask_bleed=3)
    true_l = MONK_LAB[2][0]
    robust = estimate_skin_tone(image, mask)
    naive = estimate_skin_tone(image, mask, erosion_radius=0, trim=(0.0, 100.0))
    assert abs(robust.lab[0] - true_l) < abs(naive.lab[0] - true_l)
    assert abs(robust.lab[0] - true_l) < 4.0


def test_unknown_below_pixel_minimum():
    image = np.empty((60, 60, 3), np.uint8)
    image[:] = MONK_RGB[5]
    mask = np.zeros((60, 60), bool)
    mask[10:30, 10:30] = True  # 400 px, 256 after a radius-2 erosion (one colour: trimming keeps all)
    assert estimate_skin_tone(image, mask, min_pixels=100).group == "medium"
    small = estimate_skin_tone(image, mask, min_pixels=300)
    assert small == SkinTone(None, None, "unknown", "unknown", None, small.pixels, 0.0)
    assert 0 < small.pixels < 300
    thin = np.zeros((60, 60), bool)
    thin[:, 20:23] = True  # 3 px wide: nothing survives the erosion
    assert estimate_skin_tone(image, thin, min_pixels=1) == SkinTone(None, None, "unknown", "unknown", None, 0, 0.0)
    assert estimate_skin_tone(image, np.zeros((60, 60), bool)).pixels == 0


def test_ita_thresholds():
    assert [ita_category(v) for v in (55.01, 55, 41.01, 41, 28.01, 28, 10.01, 10, -29.99, -30)] == [
        "very light",
        "light",
        "light",
        "intermediate",
        "intermediate",
        "tan",
        "tan",
        "brown",
        "brown",
        "dark",
    ]
    assert [ita_group(v) for v in (41.01, 41, 10.01, 10, -80)] == ["light", "medium", "medium", "dark", "dark"]
    assert float(ita_degrees(60.0, 10.0)) == pytest.approx(45.0)
    assert float(ita_degrees(40.0, 10.0)) == pytest.approx(-45.0)
    assert [nearest_monk(lab) for lab in MONK_LAB] == list(range(1, 11))


def test_person_crop_matches_full_image():
    image, _, mask = synth.render_face(MONK_RGB[6])
    labels = np.where(mask, 13, 0).astype(np.uint8)  # 13 = Face
    labels[mask & (np.arange(mask.shape[0])[:, None] > 110)] = 14  # Left-arm
    ys, xs = np.nonzero(labels)
    bbox = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    crop = labels[bbox[1] : bbox[3], bbox[0] : bbox[2]]
    assert person_skin_tone(image, bbox, crop) == estimate_skin_tone(image, mask)
    hair_only = np.where(crop > 0, 2, 0).astype(np.uint8)  # 2 = Hair: not skin
    assert person_skin_tone(image, bbox, hair_only).group == "unknown"


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="uint8"):
        estimate_skin_tone(np.zeros((4, 4, 3)), np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="skin_mask"):
        estimate_skin_tone(np.zeros((4, 4, 3), np.uint8), np.ones((4, 5), bool))


def test_large_skin_areas_are_measured_on_an_even_stride(monkeypatch):
    from m2fp_batch.annotate import skin_tone

    rng = np.random.default_rng(0)
    image = np.clip(rng.normal((200, 150, 120), 12, (400, 300, 3)), 0, 255).astype(np.uint8)
    mask = np.ones((400, 300), bool)
    whole = skin_tone.estimate_skin_tone(image, mask)
    monkeypatch.setattr(skin_tone, "MAX_SKIN_PIXELS", 10_000)
    strided = skin_tone.estimate_skin_tone(image, mask)
    assert strided.pixels < 10_000 < whole.pixels
    assert strided.group == whole.group and abs(strided.ita - whole.ita) < 1.0
