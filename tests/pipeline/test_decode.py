"""Decoding guards: every kind of bad file gives its error kind and a readable message; unusual
but valid files decode to (H, W, 3) uint8 with the right orientation and values."""

from __future__ import annotations

import io

import numpy as np
import pytest
from badfiles import MAX_PIXELS, MIN_SIDE, bad_files, good_files
from PIL import Image, ImageFile, ImageOps

from m2fp_batch.decode import ImageError, decode_image
from m2fp_batch.schema import ERROR_KINDS

BAD = bad_files()
GOOD = good_files()


def test_at_least_15_kinds_of_bad_files():
    assert len(BAD) >= 15


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_file(name):
    data, kind = BAD[name]
    with pytest.raises(ImageError) as e:
        decode_image(data, max_pixels=MAX_PIXELS, min_side=MIN_SIDE)
    assert e.value.kind == kind, e.value.message
    assert kind in ERROR_KINDS
    assert len(e.value.message) > 15 and "Traceback" not in e.value.message


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_file(name):
    data, shape = GOOD[name]
    img = decode_image(data, max_pixels=MAX_PIXELS, min_side=MIN_SIDE)
    assert img.dtype == np.uint8 and img.shape == (*shape, 3)


def _official_loader(data: bytes) -> np.ndarray:
    """How the official pipeline reads a photo: PIL, EXIF orientation applied, RGB."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def test_same_pixels_as_the_official_loader():
    for name in ("good/photo.jpg", "good/exif_rotated.jpg", "good/rgba.png", "good/cmyk.jpg", "good/gray.png"):
        data = GOOD[name][0]
        np.testing.assert_array_equal(decode_image(data, max_pixels=MAX_PIXELS), _official_loader(data))


def test_sixteen_bit_is_scaled_not_clipped():
    gray = decode_image(GOOD["good/gray.png"][0], max_pixels=MAX_PIXELS)
    g16 = decode_image(GOOD["good/gray16.png"][0], max_pixels=MAX_PIXELS)
    np.testing.assert_array_equal(g16, gray)  # v * 257 / 257 == v; clipping would saturate at 255
    assert g16.max() > 200 and len(np.unique(g16)) > 100


def test_truncated_images_are_not_silently_accepted(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        decode_image(GOOD["good/photo.jpg"][0], max_pixels=MAX_PIXELS)


def test_rgb_array_copies_in_strips_the_same_pixels(monkeypatch):
    from PIL import Image
    from skimage import data

    from m2fp_batch import decode

    im = Image.fromarray(data.astronaut()[:509, :301])
    monkeypatch.setattr(decode, "STRIP_PIXELS", 301 * 7)  # 73 strips, the last one short
    out = decode.rgb_array(im)
    assert out.flags.writeable and out.shape == (509, 301, 3)
    np.testing.assert_array_equal(out, np.asarray(im))
    with pytest.raises(ValueError, match="RGB"):
        decode.rgb_array(im.convert("L"))
