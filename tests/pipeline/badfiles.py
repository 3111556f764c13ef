"""Real photos and the kinds of broken files a crawl produces, written into a directory.

``write_inputs(dir)`` returns {relative path: expected (status, error_kind)}; the decoding
test and the job test both check every one of them.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# the job tests run with these guard settings
MAX_PIXELS = 1_000_000
MIN_SIDE = 8


def _photo() -> np.ndarray:
    from skimage import data

    return data.astronaut()  # (512, 512, 3) uint8, a real photo


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_with_size(width: int, height: int) -> bytes:
    """A valid small PNG whose IHDR (CRC fixed) claims ``width`` x ``height``."""
    data = bytearray(_encode(Image.new("RGB", (8, 8), (200, 100, 50)), "PNG"))
    # IHDR chunk: length(4) 'IHDR'(4) data(13) crc(4) right after the 8-byte signature
    data[16:24] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF
    data[29:33] = struct.pack(">I", crc)
    return bytes(data)


def _corrupt_idat(png: bytes) -> bytes:
    i = png.index(b"IDAT") + 4
    b = bytearray(png)
    for k in range(i + 20, min(i + 400, len(b) - 12)):
        b[k] ^= 0x5A
    return bytes(b)


def bad_files() -> dict[str, tuple[bytes, str]]:
    """{name: (bytes, expected error_kind)} for at least 15 kinds of bad files."""
    photo = Image.fromarray(_photo())
    jpeg = _encode(photo, "JPEG", quality=90)
    png = _encode(photo, "PNG")
    webp = _encode(photo, "WEBP", quality=80)
    tif = _encode(photo, "TIFF")
    bmp = _encode(photo, "BMP")
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("a.txt", "hello")
    floats = Image.fromarray(np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64) * 3.5, mode="F")
    ints = Image.fromarray((np.arange(64 * 64, dtype=np.int32).reshape(64, 64) - 2000) * 40, mode="I")
    return {
        "bad/empty.jpg": (b"", "empty"),
        "bad/error_page.jpg": (b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "not_an_image"),
        "bad/notes.png": (b"just some text, not pixels\n" * 4, "not_an_image"),
        "bad/random.webp": (np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "not_an_image"),
        "bad/archive.png": (zbuf.getvalue(), "not_an_image"),
        "bad/document.tif": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "not_an_image"),
        "bad/truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "bad/header_only.jpg": (jpeg[:600], "truncated"),
        "bad/truncated.png": (png[: len(png) // 2], "truncated"),
        "bad/truncated.webp": (webp[: len(webp) // 2], "corrupt"),  # libwebp: "could not create decoder object"
        "bad/truncated.tiff": (tif[: len(tif) // 3], "truncated"),
        "bad/truncated.bmp": (bmp[: len(bmp) // 2], "truncated"),
        "bad/corrupt_data.png": (_corrupt_idat(png), "corrupt"),
        "bad/bomb.png": (_png_with_size(60_000, 60_000), "too_large"),
        "bad/large.png": (_encode(Image.new("RGB", (1200, 1000), (90, 120, 30)), "PNG"), "too_large"),
        "bad/one_pixel.png": (_encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"), "too_small"),
        "bad/float.tif": (_encode(floats, "TIFF"), "unsupported_mode"),
        "bad/int32.tif": (_encode(ints, "TIFF"), "unsupported_mode"),
    }


def good_files() -> dict[str, tuple[bytes, tuple[int, int]]]:
    """{name: (bytes, expected (H, W) after orientation)}: unusual but valid images."""
    rgb = _photo()
    photo = Image.fromarray(rgb)
    h, w = rgb.shape[:2]
    gray = photo.convert("L")
    g16 = Image.fromarray(np.asarray(gray).astype(np.uint16) * 257)
    rgba = photo.convert("RGBA")
    rgba.putalpha(128)
    pal = photo.convert("P", palette=Image.ADAPTIVE, colors=64)
    pal.info["transparency"] = 0
    rotated = photo.crop((0, 0, 512, 384))  # 384 x 512 stored, orientation 6 -> 512 x 384 shown
    exif = Image.Exif()
    exif[0x0112] = 6
    return {
        "good/photo.jpg": (_encode(photo, "JPEG", quality=90), (h, w)),
        "good/UPPER.JPEG": (_encode(photo, "JPEG"), (h, w)),
        "good/nested/deeper/photo.bmp": (_encode(photo, "BMP"), (h, w)),
        "good/photo.Tiff": (_encode(photo, "TIFF"), (h, w)),
        "good/photo.webp": (_encode(photo, "WEBP"), (h, w)),
        "good/gray.png": (_encode(gray, "PNG"), (h, w)),
        "good/gray16.png": (_encode(g16, "PNG"), (h, w)),
        "good/rgba.png": (_encode(rgba, "PNG"), (h, w)),
        "good/gray_alpha.png": (_encode(photo.convert("LA"), "PNG"), (h, w)),
        "good/palette_transparent.png": (_encode(pal, "PNG", transparency=0), (h, w)),
        "good/cmyk.jpg": (_encode(photo.convert("CMYK"), "JPEG"), (h, w)),
        "good/bilevel.png": (_encode(gray.convert("1"), "PNG"), (h, w)),
        "good/exif_rotated.jpg": (_encode(rotated, "JPEG", exif=exif.tobytes()), (512, 384)),
    }


def write_inputs(root: Path) -> dict[str, tuple[str, str | None]]:
    """Write good and bad files (plus a dangling symlink and ignored files) under ``root``.

    Returns {relative path: (status, error_kind)} for every file the job must list.
    """
    expected: dict[str, tuple[str, str | None]] = {}
    for name, (data, kind) in bad_files().items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        expected[name] = ("error", kind)
    for name, (data, _) in good_files().items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        expected[name] = ("ok", None)
    link = root / "bad" / "dangling_link.jpg"
    os.symlink(root / "bad" / "was_deleted.jpg", link)
    expected["bad/dangling_link.jpg"] = ("error", "missing")
    (root / "good" / "readme.txt").write_text("not listed: not an image extension")
    (root / "good" / "folder.jpg").mkdir()  # a directory with an image-like name is not an input
    return expected
