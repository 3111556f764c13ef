"""Pictures of a parse, as users know them from M2FP web demos: pure numpy."""

from __future__ import annotations

import numpy as np

from m2fp_batch.annotate.palette import PALETTE, colorize


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


def people_cutout(image: np.ndarray, people_mask: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 RGBA: the photo where ``people_mask`` is set, transparent elsewhere."""
    alpha = np.where(people_mask, 255, 0).astype(np.uint8)
    rgb = np.where(people_mask[..., None], image, 0).astype(np.uint8)
    return np.dstack([rgb, alpha])
