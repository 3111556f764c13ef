"""One reviewed row: the job's row with a verdict and, when a reviewer drew them, new labels (no FiftyOne).

Every review tool ends a row with :func:`finish_row`. Persons are rebuilt from masks by
:func:`build_person`: a part whose pixels are unchanged keeps the job's RLE and score, an edited
part gets score null; a person whose mask and parts are unchanged is the job's person, bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from m2fp_batch.annotate import rle
from m2fp_batch.annotate.parts import mask_bbox
from m2fp_batch.labels import class_name, decode_mask, semantic_map
from m2fp_batch.schema import REVIEW_STATUS, REVIEW_STATUSES, SKIN_GROUPS

__all__ = [
    "ADDED_PERSON_SCORE",
    "UNKNOWN_SKIN_TONE",
    "ReviewRowError",
    "build_person",
    "finish_row",
    "patched_semantic",
    "person_mask",
    "refresh_summary",
    "semantic_entries",
    "signature",
]

ADDED_PERSON_SCORE = 1.0

# the estimator's own "not measured" result, for a person a reviewer added (schema v2+)
UNKNOWN_SKIN_TONE = {
    "lab": None,
    "ita": None,
    "ita_category": "unknown",
    "group": "unknown",
    "monk": None,
    "pixels": 0,
    "confidence": 0.0,
    "hue": None,
    "source": None,  # schema v3: not measured; readers derive it from the reviewed labels
}


class ReviewRowError(ValueError):
    """One row's review cannot be read (an unknown label, a mask of another size): the row keeps the
    job's labels as ``unreviewed`` and the error is listed."""


def finish_row(
    job_row: Mapping[str, Any],
    status: str,
    persons: list[dict] | None = None,
    *,
    semantic: list[dict] | None = None,
    by: str | None = None,
    time: str | None = None,
) -> dict:
    """The reviewed layout's row of one job row: its verdict ``status`` (one of ``REVIEW_STATUSES``).

    ``persons`` None keeps the job's labels (``review_edited`` false). Otherwise they replace the
    job's persons, ``semantic`` (default: the job's map patched with the parts that changed,
    :func:`patched_semantic`) replaces its map, the skin-tone summary follows the persons, and
    ``review_edited`` says whether the labels differ from the job's. ``by`` / ``time``: who gave
    the verdict and when (ISO 8601), None when unknown.
    """
    if status not in REVIEW_STATUSES:
        raise ValueError(f"review status {status!r} is not one of {REVIEW_STATUSES}")
    row = {**job_row, REVIEW_STATUS: status, "review_edited": False, "review_by": by, "review_time": time}
    if persons is None:
        return row
    row["persons"] = persons
    row["semantic"] = patched_semantic(job_row, persons) if semantic is None else semantic
    refresh_summary(row)
    row["review_edited"] = signature(row) != signature(job_row)
    return row


def semantic_entries(label_map: np.ndarray) -> list[dict]:
    """The ``semantic`` column value of a label map: one entry per class present except 0."""
    ids, counts = np.unique(label_map, return_counts=True)
    return [
        {"label_id": int(i), "label": class_name(int(i)), "area": int(c), "mask": rle.encode(label_map == i)}
        for i, c in zip(ids, counts, strict=True)
        if i != 0
    ]


def _part_entry(label_id: int, m: np.ndarray, person_area: int, prev: Mapping | None) -> dict:
    enc = rle.encode(m)
    same = prev is not None and prev["mask"]["counts"] == enc["counts"]
    area = int(m.sum())
    return {
        "label_id": label_id,
        "label": class_name(label_id),
        "area": area,
        "fraction": float(area / person_area) if person_area else 0.0,
        "bbox": list(mask_bbox(m)),
        "score": prev["score"] if same else None,
        "mask": dict(prev["mask"]) if same else enc,
    }


def build_person(
    old: Mapping | None,
    full: np.ndarray,
    parts: Mapping[int, np.ndarray],
    *,
    person_id: int,
    score: float | None,
    schema_version: int,
) -> dict:
    """A ``persons`` entry from a person's mask and its part masks (label id -> bool mask).

    ``old`` is the job's person this one was made from (None: a reviewer added it; it gets score
    :data:`ADDED_PERSON_SCORE` and, from schema v2, an unknown skin tone). Unchanged pixels keep
    the job's encoding and scores; a fully unchanged person is the job's entry itself.
    """
    full = np.asarray(full, dtype=bool)
    kept = {int(k): np.asarray(m, dtype=bool) for k, m in sorted(parts.items()) if np.asarray(m).any()}
    old_parts = {int(q["label_id"]): q for q in (old or {}).get("parts") or []}
    if old is not None and _same_mask(old["mask"], full) and kept.keys() == old_parts.keys():
        if all(_same_mask(old_parts[k]["mask"], m) for k, m in kept.items()):
            return {**old, "person_id": person_id}
    area = int(full.sum())
    person = dict(old) if old is not None else {}
    if old is None and schema_version >= 2:
        person["skin_tone"] = dict(UNKNOWN_SKIN_TONE)
    x0, y0 = (0, 0) if mask_bbox(full) is None else mask_bbox(full)[:2]
    person.update(
        person_id=person_id,
        score=float(score) if score is not None else float(old["score"]) if old else ADDED_PERSON_SCORE,
        bbox=list(mask_bbox(full) or (x0, y0, x0, y0)),
        area=area,
        mask=dict(old["mask"]) if old is not None and _same_mask(old["mask"], full) else rle.encode(full),
        parts=[_part_entry(k, m, area, old_parts.get(k)) for k, m in kept.items()],
    )
    return person


def person_mask(base: np.ndarray, old_parts: Iterable[np.ndarray], new_parts: Iterable[np.ndarray]) -> np.ndarray:
    """A person's mask after its parts changed: ``base`` less the pixels its parts lost, plus those they gained.

    Unchanged parts leave ``base`` exactly as it is (a job's parts need not lie inside its person).
    """
    base = np.asarray(base, dtype=bool)
    old, new = np.zeros(base.shape, bool), np.zeros(base.shape, bool)
    for m in old_parts:
        old |= m
    for m in new_parts:
        new |= m
    return (base & ~(old & ~new)) | (new & ~old)


def _same_mask(enc: Mapping, m: np.ndarray) -> bool:
    return tuple(int(v) for v in enc["size"]) == m.shape and enc["counts"] == rle.encode(m)["counts"]


def _part_keys(persons: Iterable[Mapping]) -> set[tuple[int, str]]:
    return {(int(q["label_id"]), q["mask"]["counts"]) for p in persons for q in p.get("parts") or []}


def patched_semantic(original: Mapping, persons: list[dict]) -> list[dict] | None:
    """The ``semantic`` column after the people's parts changed from ``original``'s to ``persons``'.

    The job's image-level map is kept and patched: pixels of a part that was removed or edited lose
    that class (where the map had it), pixels of a new or edited part get its class (in person
    order, a later person on top). Unchanged parts leave the job's map exactly as it was.
    """
    before, after = _part_keys(original.get("persons") or []), _part_keys(persons)
    if before == after:
        return original.get("semantic")
    sem = semantic_map(original)
    for p in original.get("persons") or []:
        for q in p.get("parts") or []:
            if (int(q["label_id"]), q["mask"]["counts"]) not in after:
                sem[decode_mask(q["mask"]) & (sem == int(q["label_id"]))] = 0
    for p in persons:
        for q in p.get("parts") or []:
            if (int(q["label_id"]), q["mask"]["counts"]) not in before:
                sem[decode_mask(q["mask"])] = int(q["label_id"])
    return semantic_entries(sem)


def refresh_summary(row: dict) -> None:
    """``num_persons`` and (schema v2+) the skin-tone summary of a row, from its persons."""
    row["num_persons"] = len(row["persons"])
    if int(row["schema_version"]) >= 2:
        groups = [(p.get("skin_tone") or {}).get("group") or "unknown" for p in row["persons"]]
        row["skin_tone_counts"] = {g: groups.count(g) for g in SKIN_GROUPS}
        row["skin_tone_groups"] = sorted({g for g in groups if g != "unknown"})


def signature(row: Mapping) -> tuple:
    """What counts as the labels of a row, for ``review_edited``."""
    sem = tuple((s["label_id"], s["mask"]["counts"]) for s in row.get("semantic") or [])
    per = tuple(
        (
            round(float(p["score"]), 6),
            p["mask"]["counts"],
            tuple((q["label_id"], q["mask"]["counts"]) for q in p["parts"]),
            (p.get("skin_tone") or {}).get("group"),
        )
        for p in row.get("persons") or []
    )
    return sem, per, row.get("skin_tone_groups"), row.get("skin_tone_counts")
