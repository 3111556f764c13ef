"""Label Studio brush RLE: a binary mask <-> the ``rle`` list of a ``brushlabels`` region.

Label Studio stores a brush region as the RGBA bytes of an (H, W) canvas, row-major, 4 bytes a
pixel, packed with the run-length scheme of thi.ng's ``rle-pack`` into a bit stream (most
significant bit first), sent as a list of byte values. The stream is:

* a header: 32 bits ``num`` (the number of values: H * W * 4), 5 bits ``word - 1`` (the bits of
  one value), four times 4 bits ``size_k - 1`` (the widths of the four run-length fields);
* then chunks until ``num`` values are out: 1 bit ``repeat``, 2 bits ``k`` (which width), ``size_k``
  bits ``n - 1`` (the chunk covers ``n`` values), then one ``word``-bit value repeated ``n`` times
  (``repeat`` = 1) or ``n`` literal values (``repeat`` = 0); the last byte is padded with zeros.

Our conventions: :func:`encode` writes 8-bit words, widths (3, 4, 8, 16) (Label Studio's own
choice), value 255 in all four bytes of a mask pixel and 0 elsewhere, repeat chunks only (every
run of a binary mask is a multiple of 4 values long). :func:`decode` reads any word size and
both chunk kinds, and takes a pixel as part of the region when its alpha byte (the 4th) is at
least 128, so strokes painted in the editor (any colour, alpha 255) decode as drawn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["ALPHA_ON", "CHANNELS", "RUN_BITS", "WORD_BITS", "LSRLEError", "decode", "decode_values", "encode"]

CHANNELS = 4  # RGBA bytes per pixel
WORD_BITS = 8
RUN_BITS = (3, 4, 8, 16)  # widths of the four run-length fields
ALPHA_ON = 128  # alpha at or above this: the pixel is in the region
ON_VALUE = 255
_HEADER_BITS = 32 + 5 + 4 * 4
_MAX_RUN = 1 << RUN_BITS[-1]


class LSRLEError(ValueError):
    """A brush RLE that is not a valid Label Studio stream, or not of the expected size."""


def _runs(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lengths, values) of the runs of a 1-D bool array."""
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate(([0], change))
    lengths = np.diff(np.concatenate((starts, [flat.size])))
    return lengths, flat[starts]


def _split_long(lengths: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut runs longer than the widest run field into pieces of at most :data:`_MAX_RUN`."""
    pieces = -(-lengths // _MAX_RUN)
    if (pieces == 1).all():
        return lengths, values
    vals = np.repeat(values, pieces)
    out = np.full(int(pieces.sum()), _MAX_RUN, np.int64)
    last = np.cumsum(pieces) - 1
    out[last] = lengths - (pieces - 1) * _MAX_RUN
    return out, vals


def _bits(value: int, width: int) -> np.ndarray:
    return ((value >> np.arange(width - 1, -1, -1)) & 1).astype(np.uint8)


def encode(mask: np.ndarray) -> list[int]:
    """(H, W) bool mask -> Label Studio's ``rle`` list (bytes as ints; conventions in the module doc)."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"expected an (H, W) mask, got shape {m.shape}")
    num = m.size * CHANNELS
    header = [_bits(num, 32), _bits(WORD_BITS - 1, 5), *(_bits(b - 1, 4) for b in RUN_BITS)]
    if m.size == 0:
        return np.packbits(np.concatenate(header)).tolist()
    lengths, values = _runs(m.ravel())
    lengths, values = _split_long(lengths * CHANNELS, values)
    n = lengths - 1
    field = np.searchsorted(np.array([1 << b for b in RUN_BITS]), n, side="right")  # smallest width that fits
    width = np.array(RUN_BITS)[field]
    code = (1 << (2 + width + WORD_BITS)) | (field << (width + WORD_BITS)) | (n << WORD_BITS)
    code |= np.where(values, ON_VALUE, 0)
    nbits = 1 + 2 + width + WORD_BITS
    top = int(nbits.max())
    table = (code[:, None] >> np.arange(top - 1, -1, -1)[None, :]) & 1
    keep = np.arange(top)[None, :] >= (top - nbits)[:, None]
    body = table[keep].astype(np.uint8)
    return np.packbits(np.concatenate([*header, body])).tolist()


class _BitReader:
    """Reads fields of up to 32 bits, most significant bit first."""

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data) + bytes(8)
        self.limit = len(data) * 8
        self.pos = 0

    def read(self, width: int) -> int:
        if self.pos + width > self.limit:
            raise LSRLEError("brush RLE ends in the middle of a value: truncated or not a Label Studio RLE")
        byte, off = divmod(self.pos, 8)
        window = int.from_bytes(self.data[byte : byte + 5], "big")
        self.pos += width
        return (window >> (40 - off - width)) & ((1 << width) - 1)


def decode_values(rle: Sequence[int] | bytes) -> np.ndarray:
    """The values a Label Studio RLE holds (all ``num`` of them, RGBA bytes for a brush region).

    Raises:
        LSRLEError: not a list of bytes, or a stream that is truncated or overruns its length.
    """
    try:
        data = bytes(rle)
    except (TypeError, ValueError) as e:
        raise LSRLEError(f"brush RLE is not a list of byte values (0..255): {e}") from e
    bits = _BitReader(data)
    num = bits.read(32)
    word = bits.read(5) + 1
    widths = [bits.read(4) + 1 for _ in range(4)]
    if num > 8 * len(data) * _MAX_RUN:  # more values than any stream of this length can hold
        raise LSRLEError(f"brush RLE claims {num} values in {len(data)} bytes: not a Label Studio RLE")
    out = np.zeros(num, np.uint32 if word > 16 else np.uint16 if word > 8 else np.uint8)
    i = 0
    while i < num:
        repeat = bits.read(1)
        j = i + 1 + bits.read(widths[bits.read(2)])
        if j > num:
            raise LSRLEError(f"brush RLE runs past its {num} values: corrupt")
        if repeat:
            out[i:j] = bits.read(word)
        else:
            out[i:j] = [bits.read(word) for _ in range(j - i)]
        i = j
    return out


def decode(rle: Sequence[int] | bytes, shape: tuple[int, int]) -> np.ndarray:
    """Label Studio's ``rle`` list -> (H, W) bool mask (alpha >= :data:`ALPHA_ON`).

    Raises:
        LSRLEError: an invalid stream, or one whose size is not ``shape`` (H * W * 4 values).
    """
    h, w = (int(v) for v in shape)
    values = decode_values(rle)
    if values.size != h * w * CHANNELS:
        raise LSRLEError(
            f"brush RLE holds {values.size} values, not {h * w * CHANNELS} (= {h} x {w} pixels x 4): "
            "a mask of another image size"
        )
    return values.reshape(h, w, CHANNELS)[:, :, 3] >= ALPHA_ON
