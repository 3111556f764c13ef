"""Pictures of a parse, as users know them from M2FP web demos: numpy arrays and PNG bytes.

One home for rendering: ``m2fp-batch parse`` writes these PNGs and ``POST /api/parse`` returns
them. The colour parse is written as a palette PNG (one byte per pixel, the project's palette as
its colour table): the same colours as :func:`parse_image`, several times cheaper to encode than
an RGB PNG.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import numpy as np
from PIL import Image

from m2fp_batch.annotate.palette import PALETTE, colorize
from m2fp_batch.annotate.parts import PersonLike

__all__ = [
    "RENDER_KINDS",
    "encode_png",
    "overlay",
    "parse_image",
    "parse_png",
    "people_cutout",
    "people_mask",
    "render_png",
]

# What `parse` writes per photo and `POST /api/parse` returns for format=image|overlay|people.
RENDER_KINDS = ("parse", "overlay", "people")


def parse_image(semantic: np.ndarray, palette: np.ndarray = PALETTE) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 colour-coded parse (background black)."""
    return colorize(semantic, palette)


def overlay(image: np.ndarray, semantic: np.ndarray, alpha: float = 0.5, palette: np.ndarray = PALETTE) -> np.ndarray:
    """Blend the colour-coded parse over the photo; background pixels keep the photo.

    Args:
        image: (H, W, 3) uint8 RGB.
        semantic: (H, W) class ids.
        alpha: opacity of the parse colours, 0 (photo only) to 1 (colours only).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be within [0, 1], got {alpha}")
    colours = colorize(semantic, palette).astype(np.float32)
    out = image.astype(np.float32)
    fg = semantic > 0
    out[fg] = (1.0 - alpha) * out[fg] + alpha * colours[fg]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def people_mask(persons: Iterable[PersonLike], shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool union of the persons' masks (each a crop inside its ``bbox``)."""
    out = np.zeros(shape, bool)
    for person in persons:
        x0, y0, x1, y1 = person.bbox
        out[y0:y1, x0:x1] |= person.mask
    return out


def people_cutout(image: np.ndarray, people: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 RGBA: the photo where ``people`` (an (H, W) bool mask) is set, transparent elsewhere."""
    alpha = np.where(people, 255, 0).astype(np.uint8)
    rgb = np.where(people[..., None], image, 0).astype(np.uint8)
    return np.dstack([rgb, alpha])


def encode_png(pixels: np.ndarray, compress_level: int = 1) -> bytes:
    """(H, W) bool/uint8, (H, W, 3) RGB or (H, W, 4) RGBA uint8 -> PNG bytes.

    Level 1: photographic content barely compresses further, and encoding stays cheap.
    """
    im = Image.fromarray(pixels)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def parse_png(semantic: np.ndarray, palette: np.ndarray = PALETTE) -> bytes:
    """The colour-coded parse as a palette PNG: class ids as indices, ``palette`` as the colour table."""
    ids = np.clip(semantic, 0, len(palette) - 1).astype(np.uint8)
    im = Image.fromarray(ids)  # mode L; putpalette turns it into P with this colour table
    im.putpalette(palette.astype(np.uint8).ravel().tolist())
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def render_png(
    kind: str, image: np.ndarray, semantic: np.ndarray, persons: Iterable[PersonLike], alpha: float = 0.5
) -> bytes:
    """One of :data:`RENDER_KINDS` as PNG bytes: ``parse`` (colour parse), ``overlay`` (the parse over
    the photo at opacity ``alpha``) or ``people`` (the photo's people on a transparent background)."""
    if kind == "parse":
        return parse_png(semantic)
    if kind == "overlay":
        return encode_png(overlay(image, semantic, alpha))
    if kind == "people":
        return encode_png(people_cutout(image, people_mask(persons, semantic.shape)))
    raise ValueError(f"unknown render kind {kind!r}; one of {', '.join(RENDER_KINDS)}")
