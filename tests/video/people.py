"""A video with two drawn people over a real photo, and their part labels frame by frame.

The background pans and zooms over a scikit-image photo without people (the rocket). Two people,
each a stack of hair, face, upper clothes and pants (CIHP classes 2, 13, 5, 9) painted in their own
colours, walk towards each other and cross (B in front of A, lower in the frame); B then walks out
of the left edge, stays out for a moment and walks back in. The labels are the pixels each person
shows after occlusion: (semantic, humans) maps with human ids 1 (A) and 2 (B)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import skimage.data
from videos import pan_frames

__all__ = ["H", "PERSON_W", "W", "PersonPath", "people_video", "training_samples"]

W, H = 160, 128
PERSON_W = 24
# (class, height in px, colour) from the top: hair, face, upper clothes, pants
PARTS = ((2, 8, (40, 25, 15)), (13, 12, (205, 160, 130)), (5, 26, None), (9, 24, (30, 30, 60)))
SHIRTS = {1: (200, 30, 40), 2: (30, 90, 210)}
OUT_FRAMES = 2  # frames B spends out of the frame


@dataclass(frozen=True)
class PersonPath:
    """Where a person's top-left corner is in each frame (None: out of the frame)."""

    human_id: int
    y: int
    xs: tuple[int | None, ...]


def _paths(n: int) -> list[PersonPath]:
    """A walks right across the frame; B walks left 4 px a frame, crosses A, walks out at the left
    edge (4 px of B show, then none for ``OUT_FRAMES`` frames) and walks back in."""
    a = tuple(int(round(4 + (W - PERSON_W - 8) * i / (n - 1))) for i in range(n))
    left = list(range(W - PERSON_W - 4, -PERSON_W + 3, -4))  # to 4 px shown
    back = list(range(-PERSON_W + 8, W, 4))
    b = (left + [None] * OUT_FRAMES + back)[:n]
    return [PersonPath(1, 20, a), PersonPath(2, 46, tuple(b))]


def _draw(rgb: np.ndarray, sem: np.ndarray, hum: np.ndarray, path: PersonPath, x: int) -> None:
    y = path.y
    for cls, height, colour in PARTS:
        x0, x1 = max(0, x), min(W, x + PERSON_W)
        if x1 > x0:
            rgb[y : y + height, x0:x1] = colour or SHIRTS[path.human_id]
            sem[y : y + height, x0:x1] = cls
            hum[y : y + height, x0:x1] = path.human_id
        y += height


def people_video(n: int) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """(frames, semantic maps, human maps) of ``n`` frames, W x H."""
    backgrounds = pan_frames(n, (W, H), photo=skimage.data.rocket())
    frames, sems, hums = [], [], []
    for i, bg in enumerate(backgrounds):
        rgb, sem, hum = bg.copy(), np.zeros((H, W), np.int64), np.zeros((H, W), np.int64)
        for path in _paths(n):  # B is drawn after A: in front
            if path.xs[i] is not None:
                _draw(rgb, sem, hum, path, path.xs[i])
        frames.append(rgb)
        sems.append(sem)
        hums.append(hum)
    return frames, sems, hums


def training_samples(frames, sems, hums, every: int) -> list[dict]:
    """ParsingDataset-style samples of every ``every``-th frame (as tests/train/helpers.py builds)."""
    out = []
    for i in range(0, len(frames), every):
        n = int(hums[i].max())
        out.append(
            {
                "image": frames[i],
                "semantic": sems[i],
                "humans": hums[i],
                "parts": hums[i] * 100 + sems[i] * (hums[i] > 0),
                "image_id": f"frame{i}",
                "skin_tones": ["medium"] * n,
            }
        )
    return out
