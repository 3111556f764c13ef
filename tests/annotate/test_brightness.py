"""Adaptive brightness: exact thresholds, HSV semantics, real photo."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import color, data

from m2fp_batch.annotate.brightness import adaptive_brightness, brightness_factor, mean_value, scale_value


def _gray(values: list[int]) -> np.ndarray:
    """A 1 x len(values) gray image whose V values are ``values``."""
    v = np.asarray(values, dtype=np.uint8)
    return np.repeat(v[None, :, None], 3, axis=2)


@pytest.mark.parametrize(
    ("values", "mean_v", "factor"),
    [
        ([80], 80.0, 1.0),
        ([0, 160], 80.0, 1.0),  # exactly 80: no change
        ([79, 80], 79.5, 1.2),
        ([79], 79.0, 1.2),
        ([50], 50.0, 1.2),  # exactly 50: the milder factor
        ([49, 51], 50.0, 1.2),
        ([49, 50], 49.5, 1.5),
        ([0], 0.0, 1.5),
        ([255], 255.0, 1.0),
    ],
)
def test_thresholds_are_exact(values, mean_v, factor):
    img = _gray(values)
    assert mean_value(img) == mean_v
    assert brightness_factor(mean_v) == factor
    out, applied = adaptive_brightness(img)
    assert applied == factor
    if factor == 1.0:
        assert out is img
    else:
        np.testing.assert_array_equal(out.max(axis=2)[0], np.minimum(np.rint(np.asarray(values) * factor), 255))


def test_threshold_just_below_boundaries():
    assert brightness_factor(np.nextafter(80.0, 0.0)) == 1.2
    assert brightness_factor(np.nextafter(50.0, 0.0)) == 1.5
    assert brightness_factor(np.nextafter(80.0, 100.0)) == 1.0


def test_mean_v_uses_max_channel():
    img = np.zeros((2, 2, 3), np.uint8)
    img[..., 2] = 100  # pure blue: V = 100 though the gray level is low
    assert mean_value(img) == 100.0
    assert adaptive_brightness(img)[1] == 1.0


def test_scaling_keeps_hue_and_saturation_and_clips_value():
    rng = np.random.default_rng(0)
    img = rng.integers(20, 200, size=(32, 32, 3), dtype=np.uint8)
    out = scale_value(img, 1.5)
    v_direct = img.max(axis=2).astype(np.float64)
    ratio = np.minimum(np.rint(v_direct * 1.5), 255) / v_direct
    np.testing.assert_array_equal(out, np.clip(np.rint(img * ratio[..., None]), 0, 255).astype(np.uint8))
    hsv_in, hsv_out = color.rgb2hsv(img), color.rgb2hsv(out)
    v_in = img.max(axis=2).astype(float)
    np.testing.assert_array_equal(out.max(axis=2), np.minimum(np.rint(v_in * 1.5), 255))
    assert np.abs(hsv_out[..., 1] - hsv_in[..., 1]).max() < 0.02
    hue_diff = np.abs(hsv_out[..., 0] - hsv_in[..., 0])
    assert np.minimum(hue_diff, 1 - hue_diff).max() < 0.01
    assert out.max() <= 255 and (out.max(axis=2) == 255).any()


def test_dark_real_photo_is_brightened_original_untouched():
    photo = data.astronaut()
    dark = (photo * 0.3).astype(np.uint8)
    before = dark.copy()
    mean_v = mean_value(dark)
    assert mean_v < 50
    out, factor = adaptive_brightness(dark)
    assert factor == 1.5
    np.testing.assert_array_equal(dark, before)
    assert mean_value(out) == pytest.approx(mean_v * 1.5, rel=0.02)
    assert adaptive_brightness(photo)[1] == 1.0


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="uint8"):
        adaptive_brightness(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="empty"):
        adaptive_brightness(np.zeros((0, 4, 3), np.uint8))


def test_strips_give_the_same_pixels(monkeypatch):
    from skimage import data

    from m2fp_batch.annotate import brightness

    dark = (data.astronaut()[:301] // 5).astype(np.uint8)
    whole = brightness.scale_value(dark, 1.5)
    monkeypatch.setattr(brightness, "STRIP_PIXELS", dark.shape[1] * 7)  # 43 strips, the last one short
    np.testing.assert_array_equal(brightness.scale_value(dark, 1.5), whole)
