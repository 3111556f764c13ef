"""Label Studio brush RLE: pixel-exact round trips, and agreement with Label Studio's own converter."""

from __future__ import annotations

import numpy as np
import pytest

from m2fp_batch.annotate import ls_rle


def _masks() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = [
        np.zeros((1, 1), bool),
        np.ones((1, 1), bool),
        np.zeros((37, 53), bool),
        np.ones((300, 400), bool),  # runs longer than the widest run field (2**16 values)
        rng.random((61, 47)) > 0.5,  # runs of one pixel (4 values)
        rng.random((120, 90)) > 0.97,
    ]
    disk = np.hypot(*np.mgrid[-100:100, -150:150]) < 80
    out.append(disk)
    out.append(~disk)
    return out


@pytest.mark.parametrize("k", range(8))
def test_round_trip_is_pixel_exact(k):
    m = _masks()[k]
    encoded = ls_rle.encode(m)
    assert all(isinstance(b, int) and 0 <= b <= 255 for b in encoded)
    back = ls_rle.decode(encoded, m.shape)
    assert back.dtype == bool and back.shape == m.shape
    assert np.array_equal(back, m)


def test_values_are_rgba_255_per_mask_pixel():
    m = _masks()[4]
    values = ls_rle.decode_values(ls_rle.encode(m))
    assert values.size == m.size * 4
    assert np.array_equal(values.reshape(*m.shape, 4), np.repeat(m[..., None] * 255, 4, axis=2))


def test_decodes_literal_chunks_and_wider_words():
    """A stream as another encoder may write it: a literal chunk and 16-bit words."""
    bits = format(8, "032b") + format(15, "05b") + "".join(format(b - 1, "04b") for b in (3, 4, 8, 16))
    # literal chunk of 3 values (field 0, n-1 = 2), then a repeat chunk of 5 (field 1, n-1 = 4)
    bits += "0" + "00" + format(2, "03b") + format(1, "016b") + format(255, "016b") + format(300, "016b")
    bits += "1" + "01" + format(4, "04b") + format(7, "016b")
    bits += "0" * (-len(bits) % 8)
    data = [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]
    assert ls_rle.decode_values(data).tolist() == [1, 255, 300, 7, 7, 7, 7, 7]


@pytest.mark.parametrize(
    "rle, match",
    [
        ([], "truncated"),
        ([0, 0, 0, 16, 0xE0], "truncated"),  # 16 values announced, no chunk follows
        ("not bytes", "not a list of byte values"),
        ([300, 1], "not a list of byte values"),
    ],
)
def test_broken_streams_are_one_error(rle, match):
    with pytest.raises(ls_rle.LSRLEError, match=match):
        ls_rle.decode_values(rle)


def test_size_mismatch_is_an_error():
    with pytest.raises(ls_rle.LSRLEError, match="another image size"):
        ls_rle.decode(ls_rle.encode(np.ones((4, 5), bool)), (5, 4 + 1))


def test_agrees_with_label_studio_converter():
    """Label Studio's own brush codec (label-studio-sdk's converter) reads ours and we read its."""
    from label_studio_sdk.converter import brush

    for m in _masks()[2:]:
        theirs = brush.decode_rle(ls_rle.encode(m)).reshape(*m.shape, 4)
        assert np.array_equal(theirs[..., 3] == 255, m) and np.array_equal(theirs[..., 3] == 0, ~m)
        their_rle = brush.encode_rle((np.repeat(m.ravel(), 4) * 255).astype(np.uint8))
        assert np.array_equal(ls_rle.decode([int(b) for b in their_rle], m.shape), m)
