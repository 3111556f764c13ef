"""Review priority: where are the auto-labels most likely wrong? (pure numpy, no FiftyOne).

Each sample of the review dataset gets ``review_priority`` in [0, 1): higher means look first.
Four signals, each in [0, 1], are combined as a noisy-OR (any one strong signal is enough to
rank a sample high, and every signal can only raise the score)::

    u_person   = 1 - min(person scores)                       0 when there is no person
    u_part     = 1 - min over persons of the area-weighted mean part score
                                                              (part scores that are null are skipped)
    u_disagree = 1 - agreement(image-level parse, people's part maps)
    n_anom     = number of anomalies (see below)

    review_priority = 1 - (1 - W_PERSON * u_person)
                        * (1 - W_PART * u_part)
                        * (1 - W_DISAGREE * u_disagree)
                        * (1 - W_ANOMALY) ** n_anom

with ``W_PERSON = 0.6``, ``W_PART = 0.5``, ``W_DISAGREE = 0.7``, ``W_ANOMALY = 0.5``.

``agreement`` is the share of pixels, among those labelled foreground by either map, where the
image-level semantic parse and the composed per-person part maps give the same class (1 when both
maps are all background). It falls when the parse sees body parts that no person covers (a missed
person) or when a person's parts disagree with the parse.

Anomalies, each counted once per person:

* ``two_faces``: the person's Face part has two or more connected components of at least
  ``min_face_pixels`` pixels (two people merged into one instance, or a face fragment);
* ``no_parts``: the person has no part at all (a person mask the parse does not support).

So a sample that is clean on every signal scores 0; one anomaly alone scores 0.5 (as much as a
person score of 1/6 alone), two anomalies 0.75; a person score of 0 alone scores 0.6, a part
score of 0 alone 0.5, a parse that agrees nowhere 0.7.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

W_PERSON = 0.6
W_PART = 0.5
W_DISAGREE = 0.7
W_ANOMALY = 0.5
DEFAULT_MIN_FACE_PIXELS = 20


@dataclass(frozen=True)
class Priority:
    """A review priority and the signals it was computed from."""

    score: float
    u_person: float
    u_part: float
    u_disagree: float
    anomalies: tuple[str, ...] = field(default_factory=tuple)

    def reasons(self, threshold: float = 0.2) -> list[str]:
        """Human-readable reasons: the anomalies plus every signal at or above ``threshold``."""
        out = list(self.anomalies)
        for name, value in (("low_person_score", self.u_person), ("low_part_score", self.u_part)):
            if value >= threshold:
                out.append(f"{name}:{1.0 - value:.2f}")
        if self.u_disagree >= threshold:
            out.append(f"parse_disagreement:{self.u_disagree:.2f}")
        return out


def review_priority(
    person_scores: Sequence[float],
    person_part_scores: Sequence[float | None],
    disagreement: float,
    anomalies: Sequence[str] = (),
) -> Priority:
    """Combine the signals into a priority (formula in the module docstring).

    Args:
        person_scores: the instance score of every person, each in [0, 1].
        person_part_scores: per person, the area-weighted mean score of its parts, or None when
            the person has no scored part.
        disagreement: ``1 - agreement`` of :func:`parse_agreement`, in [0, 1].
        anomalies: one string per anomaly found (see :func:`person_anomalies`).

    Raises:
        ValueError: a score or the disagreement is outside [0, 1] or not finite.
    """
    values = [*person_scores, *(s for s in person_part_scores if s is not None), disagreement]
    for v in values:
        if not (np.isfinite(v) and 0.0 <= float(v) <= 1.0):
            raise ValueError(f"scores and disagreement must be in [0, 1], got {v!r}")
    u_person = 1.0 - float(min(person_scores)) if len(person_scores) else 0.0
    known = [float(s) for s in person_part_scores if s is not None]
    u_part = 1.0 - min(known) if known else 0.0
    u_disagree = float(disagreement)
    keep = (1 - W_PERSON * u_person) * (1 - W_PART * u_part) * (1 - W_DISAGREE * u_disagree)
    keep *= (1 - W_ANOMALY) ** len(anomalies)
    return Priority(
        score=float(1.0 - keep), u_person=u_person, u_part=u_part, u_disagree=u_disagree, anomalies=tuple(anomalies)
    )


def weighted_part_score(areas: Sequence[int], scores: Sequence[float | None]) -> float | None:
    """Area-weighted mean of the part scores that are not None; None when there is none."""
    pairs = [(a, s) for a, s in zip(areas, scores, strict=True) if s is not None and a > 0]
    if not pairs:
        return None
    total = sum(a for a, _ in pairs)
    return float(sum(a * s for a, s in pairs) / total)


def parse_agreement(semantic: np.ndarray, person_parts: np.ndarray) -> float:
    """Share of foreground pixels (either map non-zero) where both maps agree; 1.0 if none.

    Args:
        semantic: (H, W) integer class ids of the image-level parse (0 = background).
        person_parts: (H, W) integer class ids composed from the people's part maps.
    """
    if semantic.shape != person_parts.shape:
        raise ValueError(f"map shapes differ: {semantic.shape} vs {person_parts.shape}")
    fg = (semantic != 0) | (person_parts != 0)
    n = int(fg.sum())
    if n == 0:
        return 1.0
    return float((semantic[fg] == person_parts[fg]).sum() / n)


def count_components(mask: np.ndarray, min_pixels: int) -> int:
    """Number of 8-connected components of ``mask`` with at least ``min_pixels`` pixels."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return 0
    sizes = np.bincount(labels.ravel())[1:]
    return int((sizes >= min_pixels).sum())


def person_anomalies(
    person_index: int,
    part_ids: Sequence[int],
    face_mask: np.ndarray | None,
    min_face_pixels: int = DEFAULT_MIN_FACE_PIXELS,
) -> list[str]:
    """The anomalies of one person: ``no_parts:<i>`` and ``two_faces:<i>`` (see the module doc).

    Args:
        person_index: the person's index, used in the anomaly strings.
        part_ids: class ids of the person's parts.
        face_mask: the person's Face pixels (any shape), or None when it has no Face part.
    """
    out = []
    if len(part_ids) == 0:
        out.append(f"no_parts:{person_index}")
    if face_mask is not None and count_components(face_mask, min_face_pixels) >= 2:
        out.append(f"two_faces:{person_index}")
    return out
