"""Bytes -> (H, W, 3) uint8 RGB, with the guards a crawl of real-world files needs.

The one decoder of photos: the job, the service, ``parse``, ``export-model``'s calibration and
the training data all decode here. PIL, EXIF orientation applied, RGB (alpha dropped, grayscale
expanded, as the official pipeline loads), plus the guards: empty files, unidentifiable bytes, truncated or corrupt data, a pixel-count limit checked
from the header before any pixel is decoded (decompression bombs), a minimum side, 16-bit
images scaled (not clipped) to 8 bits, CMYK / palette / alpha modes converted, and modes
without a defined RGB meaning refused. Every refusal is an :class:`ImageError` with a
``kind`` (see ``m2fp_batch.schema.ERROR_KINDS``) and a message a person understands.
"""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from m2fp_batch.deprecation import old_names
from m2fp_batch.errors import UserError
from m2fp_batch.memory import STRIP_PIXELS

__all__ = ["DEFAULT_MAX_PIXELS", "ImageError", "decode_image", "rgb_array"]

# PIL's decompression-bomb limit: the job's default max_pixels, and the readers' limit for an
# output that does not record its own setting.
DEFAULT_MAX_PIXELS = 89_478_485
# moved names (one release): the model input's resize is m2fp_batch.resize
__getattr__ = old_names(__name__, {n: f"m2fp_batch.resize:{n}" for n in ("SHORT_EDGE", "MAX_SIZE")})
# Modes convert("RGB") handles with the right meaning.
_DIRECT = {"RGB", "L", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "1"}
_ALPHA = {"RGBA", "LA", "La", "RGBa", "PA", "P"}
_SIXTEEN = {"I;16", "I;16B", "I;16L", "I;16N"}


class ImageError(UserError):
    """An input that cannot become an RGB image; ``kind`` is the error class."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _describe_head(data: bytes) -> str:
    head = data[:16]
    if head.lstrip().lower().startswith((b"<!doctype", b"<html", b"<?xml", b"<svg")):
        return "it looks like HTML/XML text"
    if head.startswith(b"%PDF"):
        return "it looks like a PDF document"
    if head.startswith(b"PK\x03\x04"):
        return "it looks like a ZIP archive"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "it looks like plain text"
    return f"first bytes {head[:8].hex(' ')}"


def rgb_array(im: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 copy of an ``RGB`` PIL image, made in row strips.

    ``np.asarray(im)`` goes through ``im.tobytes()``, which joins its chunks: two more full
    copies at once beside PIL's own 4 bytes per pixel (docs/performance.md, "Numbers behind the code").
    """
    if im.mode != "RGB":
        raise ValueError(f"expected an RGB image, got mode {im.mode!r}")
    w, h = im.size
    out = np.empty((h, w, 3), np.uint8)
    step = max(1, STRIP_PIXELS // max(w, 1))
    for y in range(0, h, step):
        out[y : y + step] = np.asarray(im.crop((0, y, w, min(h, y + step))))
    return out


def _to_rgb(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode == "RGB":
        return rgb_array(im)
    if mode in _DIRECT:
        return rgb_array(im.convert("RGB"))
    if mode in _ALPHA:
        # Alpha is dropped (the colour under it is kept), as the official loader does.
        return rgb_array(im.convert("RGBA").convert("RGB"))
    if mode in _SIXTEEN or mode == "I":
        a = np.asarray(im)
        if mode == "I" and (a.size and (a.min() < 0 or a.max() > 65535)):
            raise ImageError(
                "unsupported_mode",
                f"32-bit integer pixels outside 0..65535 (min {a.min()}, max {a.max()}): no RGB meaning",
            )
        # Full 16-bit range onto 0..255 (65535 / 257 = 255), rounded; never clipped.
        g = np.rint(a.astype(np.float64) / 257.0).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    raise ImageError(
        "unsupported_mode",
        f"pixel mode {mode!r} (e.g. floating-point or multi-band scientific data) has no RGB meaning",
    )


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = 1) -> np.ndarray:
    """Decode image bytes to (H, W, 3) uint8 RGB, EXIF orientation applied.

    Raises:
        ImageError: empty, not an image, truncated/corrupt, too large, too small, or a mode
            without an RGB meaning.
    """
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on: truncated files would pass as images")
    if len(data) == 0:
        raise ImageError("empty", "the file is empty (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
        except UnidentifiedImageError as e:
            raise ImageError(
                "not_an_image", f"not an image PIL can read ({len(data)} bytes; {_describe_head(data)})"
            ) from e
        except Image.DecompressionBombError as e:
            raise ImageError("too_large", f"image dimensions exceed the decompression-bomb limit: {e}") from e
        except (OSError, SyntaxError, ValueError, struct.error, EOFError) as e:
            if "truncated" in str(e).lower() or isinstance(e, EOFError):
                raise ImageError("truncated", f"the image ends early, inside its header: {e}") from e
            raise ImageError("corrupt", f"the image header is corrupt: {e}") from e
        with im:
            w, h = im.size
            if w * h > max_pixels:
                raise ImageError(
                    "too_large",
                    f"image is {w}x{h} = {w * h / 1e6:.1f} Mpx, above the limit of {max_pixels / 1e6:.1f} Mpx "
                    "(max_pixels; a guard against decompression bombs)",
                )
            if min(w, h) < min_side:
                raise ImageError("too_small", f"image is {w}x{h}, a side is below min_side={min_side} pixels")
            try:
                im.load()
            except (OSError, EOFError) as e:
                msg = str(e)
                kind = "truncated" if "truncated" in msg.lower() or isinstance(e, EOFError) else "corrupt"
                raise ImageError(
                    kind, f"the image data is {'truncated' if kind == 'truncated' else 'corrupt'}: {msg}"
                ) from e
            except (SyntaxError, ValueError, struct.error, IndexError) as e:
                raise ImageError("corrupt", f"the image data is corrupt: {e}") from e
            try:
                ImageOps.exif_transpose(im, in_place=True)  # no copy when the photo is upright
            except (OSError, SyntaxError, ValueError, struct.error, KeyError, TypeError) as e:
                raise ImageError("corrupt", f"the EXIF orientation metadata is corrupt: {e}") from e
            return _to_rgb(im)
