"""One job row -> arrays: the semantic map, the person-id map, the part-instance map, per-person masks.

Masks are the job's COCO RLEs ``{size: [H, W], counts: str}`` (``m2fp_batch/schema.py``). The maps
are painted straight from the run lengths (:func:`mask_runs`, vectorised numpy, no full-size
mask per RLE), so rebuilding every map of a row costs about one pass over the labelled pixels.

Overlaps: the job's semantic classes are disjoint. Persons (and so their parts) may overlap; in
the person-id and part-instance maps a later person is drawn over an earlier one (the model's
order), the rule the review's ``person_parts`` map also uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils

from m2fp_batch.annotate.palette import CIHP_CLASSES
from m2fp_batch.schema import SKIN_GROUPS

__all__ = [
    "DecodedPerson",
    "LabelMaps",
    "MaskSizeError",
    "PartInstance",
    "class_name",
    "decode_mask",
    "decode_persons",
    "human_map",
    "label_maps",
    "mask_runs",
    "paint",
    "part_instance_map",
    "part_instances",
    "person_parts_map",
    "rle_shape",
    "semantic_map",
    "skin_tones",
]

UNKNOWN_SKIN = SKIN_GROUPS[-1]


class MaskSizeError(ValueError):
    """A mask's size differs from the image it belongs to."""


def class_name(label_id: int) -> str:
    """CIHP class name of a label id."""
    return CIHP_CLASSES[label_id] if 0 <= label_id < len(CIHP_CLASSES) else f"class_{label_id}"


def rle_shape(rle: Mapping) -> tuple[int, int]:
    """(H, W) of a job RLE."""
    h, w = (int(v) for v in rle["size"])
    return h, w


def decode_mask(rle: Mapping) -> np.ndarray:
    """A job RLE ``{size, counts: str}`` -> (H, W) bool (pycocotools; a view, no copy)."""
    h, w = rle_shape(rle)
    counts = rle["counts"]
    counts = counts.encode("ascii") if isinstance(counts, str) else counts
    return mask_utils.decode({"size": [h, w], "counts": counts}).view(bool)


def _counts(counts: str | bytes) -> np.ndarray:
    """The run lengths of a COCO compressed counts string (pycocotools' ``rleFrString``, vectorised)."""
    c = np.frombuffer(counts.encode("ascii") if isinstance(counts, str) else counts, np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return c
    ends = np.flatnonzero((c & 0x20) == 0)  # last 5-bit chunk of each number
    starts = np.concatenate(([0], ends[:-1] + 1))
    pos = np.arange(c.size) - np.repeat(starts, ends - starts + 1)  # chunk index within its number
    vals = np.add.reduceat((c & 0x1F) << (5 * pos), starts)
    negative = (c[ends] & 0x10) != 0
    vals = np.where(negative, vals - (np.int64(1) << (5 * (pos[ends] + 1))), vals)
    # counts[m] += counts[m - 2] for m > 2: running sums over odd indices, and over even ones from 2
    vals[1::2] = np.cumsum(vals[1::2])
    vals[2::2] = np.cumsum(vals[2::2])
    return vals


def mask_runs(rle: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """(starts, lengths) of the foreground runs of a job RLE, in column-major pixel order."""
    counts = _counts(rle["counts"])
    bounds = np.concatenate(([0], np.cumsum(counts)))
    return bounds[1:-1:2], counts[1::2]


def _run_indices(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The flat indices covered by runs (concatenated aranges)."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return offsets + np.arange(total)


def paint(shape: tuple[int, int], rles: Sequence[Mapping], values: Sequence[int], dtype=np.int64) -> np.ndarray:
    """(H, W) map with ``values[k]`` on the pixels of ``rles[k]`` (later ones drawn over earlier ones).

    Raises:
        MaskSizeError: an RLE's size is not ``shape``.
    """
    h, w = shape
    flat = np.zeros(h * w, dtype=dtype)
    for rle, v in zip(rles, values, strict=True):
        if rle_shape(rle) != (h, w):
            raise MaskSizeError(f"mask size {list(rle_shape(rle))} differs from the image size {[h, w]}")
        flat[_run_indices(*mask_runs(rle))] = v
    return flat.reshape(w, h).T  # RLEs run down columns


def semantic_map(row: Mapping, shape: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W) uint8 class ids of the row's image-level parse (0 = background).

    Raises:
        MaskSizeError: a class mask's size differs from ``shape`` (default: the row's height, width).
    """
    shape = shape or (int(row["height"]), int(row["width"]))
    entries = row.get("semantic") or []
    out = paint(shape, [e["mask"] for e in entries], [int(e["label_id"]) for e in entries], np.uint8)
    return np.ascontiguousarray(out)


def human_map(row: Mapping, shape: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W) int64 person ids: person ``k`` of the row is ``k + 1``, 0 = background."""
    shape = shape or (int(row["height"]), int(row["width"]))
    persons = row.get("persons") or []
    return np.ascontiguousarray(paint(shape, [p["mask"] for p in persons], range(1, len(persons) + 1)))


@dataclass(frozen=True)
class PartInstance:
    """One (person, part) pair: its id in the part-instance map."""

    instance_id: int  # 1-based, 0 = background
    person_id: int  # 0-based index of the person in the row (its human id is person_id + 1)
    label_id: int  # CIHP class id


def part_instances(row: Mapping) -> list[PartInstance]:
    """The (person, part) pairs of a row, numbered 1.. in person order, then the person's part order."""
    out = []
    for k, p in enumerate(row.get("persons") or []):
        for q in p.get("parts") or []:
            out.append(PartInstance(len(out) + 1, k, int(q["label_id"])))
    return out


def part_instance_map(row: Mapping, shape: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W) int64 part-instance ids (:func:`part_instances` numbering), 0 = background."""
    shape = shape or (int(row["height"]), int(row["width"]))
    rles = [q["mask"] for p in row.get("persons") or [] for q in p.get("parts") or []]
    return np.ascontiguousarray(paint(shape, rles, range(1, len(rles) + 1)))


def skin_tones(row: Mapping) -> list[str]:
    """The skin-tone group of each person of the row (``unknown`` when not measured, e.g. schema v1)."""
    return [((p.get("skin_tone") or {}).get("group") or UNKNOWN_SKIN) for p in row.get("persons") or []]


@dataclass(frozen=True)
class LabelMaps:
    """Every label array of one image, at the image's own size (H, W)."""

    image_id: str
    semantic: np.ndarray  # (H, W) uint8 class ids
    humans: np.ndarray  # (H, W) int64 person ids, 0 = background
    parts: np.ndarray  # (H, W) int64 part-instance ids, 0 = background
    instances: list[PartInstance]  # what each part-instance id is
    skin_tones: list[str]  # per person, in person order


def label_maps(row: Mapping) -> LabelMaps:
    """The arrays of an ``ok`` row (semantic, person-id and part-instance maps, skin tones)."""
    shape = (int(row["height"]), int(row["width"]))
    return LabelMaps(
        image_id=str(row["image_id"]),
        semantic=semantic_map(row, shape),
        humans=human_map(row, shape),
        parts=part_instance_map(row, shape),
        instances=part_instances(row),
        skin_tones=skin_tones(row),
    )


@dataclass
class DecodedPerson:
    """One person of a row, decoded: full-image mask and its parts."""

    index: int
    score: float
    bbox: tuple[int, int, int, int]
    mask: np.ndarray  # (H, W) bool
    part_ids: list[int]
    part_masks: list[np.ndarray]  # (H, W) bool, one per part
    part_areas: list[int]
    part_scores: list[float | None]
    row: dict  # the person struct as read (skin tone and other fields)


def decode_persons(row: Mapping) -> list[DecodedPerson]:
    """Decode every person of a row (masks of the person and of each part)."""
    out = []
    for i, p in enumerate(row.get("persons") or []):
        parts = p.get("parts") or []
        x0, y0, x1, y1 = (int(v) for v in p["bbox"])
        out.append(
            DecodedPerson(
                index=i,
                score=float(p["score"]),
                bbox=(x0, y0, x1, y1),
                mask=decode_mask(p["mask"]),
                part_ids=[int(q["label_id"]) for q in parts],
                part_masks=[decode_mask(q["mask"]) for q in parts],
                part_areas=[int(q["area"]) for q in parts],
                part_scores=[None if q.get("score") is None else float(q["score"]) for q in parts],
                row=p,
            )
        )
    return out


def person_parts_map(persons: list[DecodedPerson], shape: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 class ids composed from the people's part maps (later persons on top)."""
    out = np.zeros(shape, dtype=np.uint8)
    for p in persons:
        for label_id, m, part in zip(p.part_ids, p.part_masks, p.row.get("parts") or [], strict=True):
            x0, y0, x1, y1 = (int(v) for v in part["bbox"])  # the part's pixels lie inside its bbox
            out[y0:y1, x0:x1][m[y0:y1, x0:x1]] = label_id
    return out
