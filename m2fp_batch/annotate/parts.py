"""Per-person part statistics from a parse (pure numpy).

A person, as the engine returns it, carries ``bbox`` = (x0, y0, x1, y1) (end-exclusive), ``mask``
(the person's pixels inside the bbox, bool) and ``part_map`` (the semantic class id of each of
those pixels, 0 outside the person or on background). This module turns that into one record per
part class present: area, fraction of the person, tight bbox in image coordinates, a confidence
score and the part's mask (as a crop in the part's bbox).

Nothing here imports the engine: any object with those three attributes works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from m2fp_batch.memory import STRIP_PIXELS


class PersonLike(Protocol):
    """The person every function of ``annotate/`` takes (the one definition; render.py imports it).

    The engine's :class:`m2fp_batch.inference.types.Person` is one. ``bbox``: (x0, y0, x1, y1)
    end-exclusive, in image pixels; ``mask``: the person's pixels inside ``bbox`` (bool);
    ``part_map``: the class id of each of those pixels (0 outside the person). Rows read back from
    Parquet are :class:`m2fp_batch.labels.DecodedPerson` (full-image masks), a different boundary.
    """

    bbox: tuple[int, int, int, int]
    mask: np.ndarray
    part_map: np.ndarray


@dataclass(frozen=True)
class PartStat:
    """One part class of one person.

    Attributes:
        label_id: class id (index into the model's class names).
        area: pixels of this part in the person.
        fraction: ``area`` / the person's area (0..1).
        bbox: (x0, y0, x1, y1) in image pixels, end-exclusive.
        score: mean per-pixel semantic probability over the part's pixels, or None when no
            score map was given.
        mask: (y1 - y0, x1 - x0) bool, the part's pixels inside ``bbox``.
    """

    label_id: int
    area: int
    fraction: float
    bbox: tuple[int, int, int, int]
    score: float | None
    mask: np.ndarray


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight (x0, y0, x1, y1), end-exclusive, of a bool mask; None when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def person_parts(person: PersonLike, semantic_score: np.ndarray | None = None) -> list[PartStat]:
    """Statistics of every part class (id > 0) present in ``person``, ordered by class id.

    Args:
        person: bbox, mask and part_map as described in the module docstring.
        semantic_score: optional (H, W) per-pixel confidence of the whole image; the part
            score is its mean over the part's pixels.
    """
    x0, y0, x1, y1 = (int(v) for v in person.bbox)
    part_map = np.asarray(person.part_map)
    pmask = np.asarray(person.mask, dtype=bool)
    if part_map.shape != pmask.shape or part_map.shape != (y1 - y0, x1 - x0):
        raise ValueError(f"part_map {part_map.shape} / mask {pmask.shape} do not match bbox {person.bbox}")
    person_area = int(pmask.sum())
    ids = np.where(pmask, part_map, 0)
    score_crop = None if semantic_score is None else np.asarray(semantic_score)[y0:y1, x0:x1]
    counts, sums = label_sums(ids, score_crop)
    out: list[PartStat] = []
    for label_id in np.flatnonzero(counts):
        if label_id == 0:
            continue
        m = ids == label_id
        bb = mask_bbox(m)
        if bb is None:  # pragma: no cover - counts > 0 implies a pixel
            continue
        bx0, by0, bx1, by1 = bb
        area = int(counts[label_id])
        out.append(
            PartStat(
                label_id=int(label_id),
                area=area,
                fraction=area / person_area if person_area else 0.0,
                bbox=(x0 + bx0, y0 + by0, x0 + bx1, y0 + by1),
                score=None if sums is None else float(sums[label_id] / area),
                mask=m[by0:by1, bx0:bx1].copy(),  # not a view that keeps the person-sized map
            )
        )
    return out


def label_sums(ids: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Pixels per label id of an integer map and, with ``weights`` of its shape, their sums
    (float64); in row strips, since ``np.bincount`` takes 8 bytes a pixel for its int64 copy."""
    ids = np.asarray(ids)
    if ids.size == 0:
        return np.zeros(1, np.int64), None if weights is None else np.zeros(1)
    n = int(ids.max()) + 1
    counts = np.zeros(n, np.int64)
    sums = None if weights is None else np.zeros(n)
    step = max(1, STRIP_PIXELS // max(1, ids.shape[-1]))
    for y in range(0, ids.shape[0], step):
        strip = ids[y : y + step].reshape(-1).astype(np.int64)
        counts += np.bincount(strip, minlength=n)
        if sums is not None:
            sums += np.bincount(strip, weights=weights[y : y + step].reshape(-1), minlength=n)
    return counts, sums


def semantic_classes(semantic: np.ndarray) -> list[tuple[int, int]]:
    """(class id, area) of every class id > 0 present in an (H, W) semantic map, by class id."""
    counts, _ = label_sums(semantic)
    return [(int(c), int(counts[c])) for c in np.flatnonzero(counts) if c > 0]


def semantic_class_scores(semantic: np.ndarray, semantic_score: np.ndarray) -> dict[int, float]:
    """{class id: mean per-pixel semantic probability over its pixels} for every class id > 0 present
    (the image-level counterpart of a part's ``score``)."""
    counts, sums = label_sums(semantic, np.asarray(semantic_score))
    return {int(c): float(sums[c] / counts[c]) for c in np.flatnonzero(counts) if c > 0}
