"""One job row -> arrays: the semantic map, the person-id map, the part-instance map, per-person masks.

Masks are the job's COCO RLEs ``{size: [H, W], counts: str}`` (``m2fp_batch/schema.py``). The maps
are painted straight from the run lengths (:func:`paint`: all counts strings of a layer parsed at
once, vectorised numpy, no full-size mask per RLE and no transpose), so rebuilding every map of a
row costs about one pass over the labelled pixels.

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
from m2fp_batch.errors import UserError
from m2fp_batch.schema import SKIN_GROUPS, SKIN_SOURCES

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
    "paint",
    "part_instance_map",
    "part_instances",
    "person_parts_map",
    "rle_shape",
    "semantic_map",
    "skin_tone_source",
    "skin_tones",
]

UNKNOWN_SKIN = SKIN_GROUPS[-1]


class MaskSizeError(UserError, ValueError):
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


def _segmented_cumsum(x: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Running sums of ``x`` restarting where ``head`` is True (``head[0]`` must be True)."""
    cs = np.cumsum(x)
    heads = np.flatnonzero(head)
    before = cs[heads] - x[heads]
    return cs - before[np.cumsum(head) - 1]


def _parse_counts(strings: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode several COCO compressed counts strings at once (pycocotools' ``rleFrString``, vectorised).

    Returns (run lengths, which string each run belongs to, index of the run within its string).
    """
    lengths = np.fromiter((len(b) for b in strings), np.int64, len(strings))
    c = np.frombuffer(b"".join(strings), np.uint8).astype(np.int64) - 48
    if c.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    ends = np.flatnonzero((c & 0x20) == 0)  # the last 5-bit chunk of each number
    starts = np.concatenate(([0], ends[:-1] + 1))
    chunks = ends - starts + 1
    pos = np.arange(c.size) - np.repeat(starts, chunks)  # chunk index within its number
    vals = np.add.reduceat((c & 0x1F) << (5 * pos), starts)
    negative = (c[ends] & 0x10) != 0
    vals[negative] -= np.int64(1) << (5 * chunks[negative])
    owner = np.searchsorted(np.cumsum(lengths), ends, side="right")
    m = np.arange(vals.size) - np.searchsorted(owner, owner)  # index within its string
    # counts[m] += counts[m - 2] for m > 2: running sums along the odd chain (from m = 1) and the
    # even chain (from m = 2) of each string
    for parity, first in ((1, 1), (0, 2)):
        sel = np.flatnonzero((m % 2 == parity) & (m >= first))
        if sel.size:
            vals[sel] = _segmented_cumsum(vals[sel], m[sel] == first)
    return vals, owner, m


def _check_shape(rles: Sequence[Mapping], shape: tuple[int, int]) -> None:
    for rle in rles:
        if rle_shape(rle) != tuple(shape):
            raise MaskSizeError(f"mask size {list(rle_shape(rle))} differs from the image size {list(shape)}")


def _paint_into(flat: np.ndarray, shape: tuple[int, int], rles: Sequence[Mapping], values: Sequence[int]) -> None:
    """Set ``values[k]`` on the pixels of ``rles[k]`` in the row-major flat map (the masks must be disjoint)."""
    if not rles:
        return
    _check_shape(rles, shape)
    strings = [r["counts"].encode("ascii") if isinstance(r["counts"], str) else r["counts"] for r in rles]
    counts, owner, m = _parse_counts(strings)
    ends = _segmented_cumsum(counts, m == 0)  # end of each run within its mask (column-major)
    fg = np.flatnonzero(m % 2 == 1)  # runs alternate background, foreground, ...
    run_len = counts[fg]
    total = int(run_len.sum())
    if total == 0:
        return
    run_start = ends[fg] - run_len
    col_major = np.repeat(run_start - (np.cumsum(run_len) - run_len), run_len) + np.arange(total)
    col, row = np.divmod(col_major, shape[0])  # RLEs run down the columns
    flat[row * shape[1] + col] = np.repeat(np.asarray(values, flat.dtype)[owner[fg]], run_len)


def paint(
    shape: tuple[int, int], layers: Sequence[tuple[Sequence[Mapping], Sequence[int]]], dtype=np.int64
) -> np.ndarray:
    """(H, W) map: each layer ``(rles, values)`` sets ``values[k]`` on the pixels of ``rles[k]``.

    The masks of one layer must be disjoint; a later layer is drawn over earlier ones.

    Raises:
        MaskSizeError: an RLE's size is not ``shape``.
    """
    h, w = shape
    flat = np.zeros(h * w, dtype=dtype)
    for rles, values in layers:
        _paint_into(flat, (h, w), rles, values)
    return flat.reshape(h, w)


def semantic_map(row: Mapping, shape: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W) uint8 class ids of the row's image-level parse (0 = background; the classes are disjoint).

    Raises:
        MaskSizeError: a class mask's size differs from ``shape`` (default: the row's height, width).
    """
    shape = shape or (int(row["height"]), int(row["width"]))
    entries = row.get("semantic") or []
    return paint(shape, [([e["mask"] for e in entries], [int(e["label_id"]) for e in entries])], np.uint8)


def human_map(row: Mapping, shape: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W) int64 person ids: person ``k`` of the row is ``k + 1``, 0 = background (later persons on top)."""
    shape = shape or (int(row["height"]), int(row["width"]))
    return paint(shape, [([p["mask"]], [k + 1]) for k, p in enumerate(row.get("persons") or [])])


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
    """(H, W) int64 part-instance ids (:func:`part_instances` numbering), 0 = background (later persons on top)."""
    shape = shape or (int(row["height"]), int(row["width"]))
    layers, next_id = [], 1
    for p in row.get("persons") or []:
        parts = p.get("parts") or []
        layers.append(([q["mask"] for q in parts], range(next_id, next_id + len(parts))))
        next_id += len(parts)
    return paint(shape, layers)


def skin_tones(row: Mapping) -> list[str]:
    """The skin-tone group of each person of the row (``unknown`` when not measured, e.g. schema v1)."""
    return [((p.get("skin_tone") or {}).get("group") or UNKNOWN_SKIN) for p in row.get("persons") or []]


def skin_tone_source(tone: Mapping | None) -> str | None:
    """How a stored ``skin_tone`` struct was obtained (``measured``, ``derived``, ``reviewed``); None
    when it holds no tone: no struct, no group, or a null ``source`` (schema v3: not measured, e.g.
    a person a reviewer added). A struct without ``source`` (schema v2) was measured by the job."""
    if not isinstance(tone, Mapping) or not tone.get("group"):
        return None
    if "source" not in tone:
        return SKIN_SOURCES[0]
    source = tone.get("source")
    return str(source) if source in SKIN_SOURCES else None


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
