"""COCO RLE through pycocotools: round trips, string counts, the encoding of real parses."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from m2fp_batch.annotate import rle


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (480, 640), (333, 17)])
def test_round_trip_random_masks(shape):
    rng = np.random.default_rng(sum(shape))
    for density in (0.0, 0.05, 0.5, 1.0):
        m = rng.random(shape) < density
        enc = rle.encode(m)
        assert enc["size"] == list(shape)
        assert isinstance(enc["counts"], str)
        np.testing.assert_array_equal(rle.decode(enc), m)
        assert rle.area(enc) == int(m.sum())
        # what another reader does with the stored struct: JSON and pycocotools only
        stored = json.loads(json.dumps(enc))
        back = mask_utils.decode({"size": stored["size"], "counts": stored["counts"].encode()})
        np.testing.assert_array_equal(back.astype(bool), m)


def test_encode_crop_matches_full_mask():
    rng = np.random.default_rng(1)
    crop = rng.random((20, 30)) < 0.4
    full = np.zeros((50, 60), bool)
    full[10:30, 5:35] = crop
    assert rle.encode_crop(crop, (5, 10, 35, 30), (50, 60)) == rle.encode(full)


def test_rejects_non_2d():
    with pytest.raises(ValueError, match="expected an"):
        rle.encode(np.zeros((2, 2, 2), bool))


def test_real_parse_masks_round_trip(tiny_parser, astronaut):
    r = tiny_parser.parse_one(astronaut)
    assert r.persons, "the tiny model finds persons on the astronaut photo"
    for person in r.persons:
        full = person.full_mask(r.image_size)
        enc = rle.encode_crop(person.mask, person.bbox, r.image_size)
        np.testing.assert_array_equal(rle.decode(enc), full)
        assert rle.area(enc) == person.area


@pytest.mark.parametrize("strip_pixels", [rle.STRIP_PIXELS, 3])
def test_same_strings_as_pycocotools_for_every_small_mask_and_crop(strip_pixels, monkeypatch):
    """Our run finder against pycocotools' own encoder, byte for byte: runs across columns, a
    last pixel on, empty and full masks, crops touching every edge; one strip of columns, or
    many (``strip_pixels`` 3: a column or two at a time)."""
    monkeypatch.setattr(rle, "STRIP_PIXELS", strip_pixels)
    rng = np.random.default_rng(0)

    def coco(m: np.ndarray) -> str:
        return mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode()

    for _ in range(3000):
        h, w = (int(v) for v in rng.integers(1, 9, 2))
        m = rng.random((h, w)) < rng.random()
        assert rle.encode(m)["counts"] == coco(m)
        y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        y1, x1 = int(rng.integers(y0, h)) + 1, int(rng.integers(x0, w)) + 1
        full = np.zeros((h, w), bool)
        full[y0:y1, x0:x1] = m[y0:y1, x0:x1]
        assert rle.encode_crop(m[y0:y1, x0:x1], (x0, y0, x1, y1), (h, w))["counts"] == coco(full)
    for m in (np.ones((7, 3), bool), np.zeros((3, 3), bool)):
        assert rle.encode(m)["counts"] == coco(m)
    assert rle.encode_crop(np.zeros((0, 0), bool), (0, 0, 0, 0), (5, 4))["counts"] == coco(np.zeros((5, 4), bool))
    with pytest.raises(ValueError, match="does not match"):
        rle.encode_crop(np.zeros((2, 2), bool), (0, 0, 3, 2), (5, 4))
