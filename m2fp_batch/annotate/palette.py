"""The project's colour palette for the 20 CIHP parsing classes (plus Human).

Hair red, upper clothes green, pants blue, face yellow, background black, and distinct
colours for the other classes. Used by the parse PNGs, the report and the FiftyOne App.
"""

from __future__ import annotations

import numpy as np

CIHP_CLASSES = (
    "Background",
    "Hat",
    "Hair",
    "Gloves",
    "Sunglasses",
    "UpperClothes",
    "Dress",
    "Coat",
    "Socks",
    "Pants",
    "Torso-skin",
    "Scarf",
    "Skirt",
    "Face",
    "Left-arm",
    "Right-arm",
    "Left-leg",
    "Right-leg",
    "Left-shoe",
    "Right-shoe",
    "Human",
)

# RGB per class id, same order as CIHP_CLASSES.
PALETTE = np.array(
    [
        (0, 0, 0),  # Background: black
        (128, 0, 128),  # Hat: purple
        (255, 0, 0),  # Hair: red
        (255, 170, 0),  # Gloves: orange
        (0, 255, 255),  # Sunglasses: cyan
        (0, 200, 0),  # UpperClothes: green
        (255, 105, 180),  # Dress: pink
        (0, 100, 0),  # Coat: dark green
        (170, 255, 85),  # Socks: lime
        (0, 0, 255),  # Pants: blue
        (210, 140, 100),  # Torso-skin: tan
        (128, 0, 0),  # Scarf: maroon
        (255, 0, 255),  # Skirt: magenta
        (255, 255, 0),  # Face: yellow
        (255, 200, 150),  # Left-arm: peach
        (200, 120, 60),  # Right-arm: brown
        (0, 128, 128),  # Left-leg: teal
        (85, 85, 255),  # Right-leg: light blue
        (128, 128, 0),  # Left-shoe: olive
        (128, 128, 128),  # Right-shoe: gray
        (255, 255, 255),  # Human: white
    ],
    dtype=np.uint8,
)

SKIN_CLASSES = ("Face", "Left-arm", "Right-arm", "Left-leg", "Right-leg", "Torso-skin")


def colorize(labels: np.ndarray, palette: np.ndarray = PALETTE) -> np.ndarray:
    """(H, W) integer class ids -> (H, W, 3) uint8 RGB."""
    return palette[np.clip(labels, 0, len(palette) - 1)]


def hex_color(class_id: int) -> str:
    r, g, b = (int(v) for v in PALETTE[class_id])
    return f"#{r:02x}{g:02x}{b:02x}"
