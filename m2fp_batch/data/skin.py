"""Skin tones for labelled data that has none, derived from its ground truth.

A CIHP-layout dir without a meta file (the CIHP release), a COCO file from another tool, a
schema v1 output or a person a reviewer added carry no skin tone. For such a person the tone is
**derived**: the job's own estimator (:func:`m2fp_batch.annotate.skin_tone.estimate_skin_tone`)
on the photo's pixels under the person's ground-truth skin parts (Face, arms, legs, Torso-skin),
recorded with ``source == "derived"`` so that it is never taken for a measured or reviewed value.
A stored tone keeps its own source (``measured``; ``reviewed`` when a reviewer set the group).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from m2fp_batch.annotate.skin_tone import (
    SOURCE_DERIVED,
    SOURCE_MEASURED,
    SOURCES,
    SkinTone,
    estimate_skin_tone,
    skin_mask_from_labels,
    unknown_tone,
)
from m2fp_batch.labels import skin_tone_source
from m2fp_batch.schema import SKIN_GROUPS

__all__ = ["count_sources", "derive_tone", "person_tones", "present_sources", "tone_fields"]

UNKNOWN = SKIN_GROUPS[-1]
TONE_FIELDS = tuple(SkinTone.__dataclass_fields__)  # every person's tone dict has exactly these keys


def derive_tone(image: np.ndarray, semantic: np.ndarray, humans: np.ndarray, person_id: int) -> dict[str, Any]:
    """The derived tone (``SkinTone.to_dict()``) of person ``person_id`` (its id in ``humans``).

    The estimator sees the person's box only: its skin is the pixels of ``humans == person_id``
    whose ground-truth class is a skin class; everything else in the box counts as not skin.
    """
    ys, xs = np.nonzero(humans == person_id)
    if ys.size == 0:
        return unknown_tone(0, SOURCE_DERIVED).to_dict()
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    mask = (humans[y0:y1, x0:x1] == person_id) & skin_mask_from_labels(semantic[y0:y1, x0:x1])
    return estimate_skin_tone(image[y0:y1, x0:x1], mask, source=SOURCE_DERIVED).to_dict()


def person_tones(
    image: np.ndarray,
    semantic: np.ndarray,
    humans: np.ndarray,
    stored: Sequence[Mapping[str, Any] | None],
) -> list[dict[str, Any]]:
    """The skin tone of every person id 1..max(humans): the stored one where it holds a tone
    (:func:`m2fp_batch.labels.skin_tone_source`), else derived from the ground truth (:func:`derive_tone`).
    Each is a dict of the :class:`SkinTone` fields (a field the data lacks is None).

    ``stored[k]`` is what the data holds for person id k + 1 (None: nothing).
    """
    count = max(len(stored), int(humans.max(initial=0)))
    out: list[dict[str, Any]] = []
    for k in range(count):
        tone = stored[k] if k < len(stored) else None
        source = skin_tone_source(tone)
        if source is None:
            out.append(derive_tone(image, semantic, humans, k + 1))
        else:
            out.append({f: tone.get(f) for f in TONE_FIELDS} | {"source": source})
    return out


def tone_fields(tones: Sequence[Mapping[str, Any]]) -> dict[str, list]:
    """The sample keys of a person list: ``skin_tones`` (groups), ``skin_sources``, ``skin_details``."""
    return {
        "skin_tones": [str(t.get("group") or UNKNOWN) for t in tones],
        "skin_sources": [str(t.get("source") or SOURCE_MEASURED) for t in tones],
        "skin_details": [dict(t) for t in tones],
    }


def present_sources(humans: np.ndarray, sources: Sequence[str] | None) -> list[str]:
    """The source of every person present in ``humans`` that has one (person id k + 1 -> ``sources[k]``)."""
    sources = list(sources or [])
    return [sources[i - 1] for i in (int(v) for v in np.unique(humans)) if 0 < i <= len(sources)]


def count_sources(sources_per_image: Sequence[Sequence[str]]) -> dict[str, int]:
    """People per source (measured, derived, reviewed) over images, every source named."""
    counts = Counter(s for sources in sources_per_image for s in sources)
    return {s: int(counts.get(s, 0)) for s in SOURCES}
