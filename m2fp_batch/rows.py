"""One output row (a dict following ``m2fp_batch.schema``) per image: parse results and errors."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from m2fp_batch.annotate import rle
from m2fp_batch.annotate.parts import person_parts, semantic_classes
from m2fp_batch.annotate.skin_tone import person_skin_tone
from m2fp_batch.schema import SCHEMA_VERSION, SKIN_GROUPS, STATUS_ERROR, STATUS_OK

if TYPE_CHECKING:  # the engine's types; importing m2fp_batch.inference would load torch
    from m2fp_batch.inference.types import ParseResult, Person

__all__ = ["ENGINE_STAGES", "LABEL_COLUMNS", "error_columns", "finish_row", "result_columns"]

# The label columns of every row, in order (key columns and provenance come from the caller).
LABEL_COLUMNS = (
    "width", "height", "status", "error", "error_kind", "num_persons", "persons", "semantic", "skin_tone_groups",
    "skin_tone_counts", "brightened", "brightness_factor", "timings",
)  # fmt: skip
# The engine's timed stages (ParseResult.timings keys), written as ``<stage>_s``.
ENGINE_STAGES = ("preprocess", "forward", "postprocess")


def _bbox(b) -> list[int]:
    return [int(v) for v in b]


def _person(pid: int, person: Person, result: ParseResult, class_names: tuple[str, ...], image: np.ndarray) -> dict:
    """One entry of ``persons``: box, mask, parts and skin tone (measured on the original ``image``)."""
    shape = result.image_size
    parts = [
        {
            "label_id": p.label_id,
            "label": class_names[p.label_id],
            "area": p.area,
            "fraction": p.fraction,
            "bbox": _bbox(p.bbox),
            "score": p.score,
            "mask": rle.encode_crop(p.mask, p.bbox, shape),
        }
        for p in person_parts(person, result.semantic_score)
    ]
    return {
        "person_id": pid,
        "score": float(person.score),
        "bbox": _bbox(person.bbox),
        "area": int(person.area),
        "mask": rle.encode_crop(person.mask, person.bbox, shape),
        "parts": parts,
        "skin_tone": person_skin_tone(image, person.bbox, person.part_map).to_dict(),
    }


def _label_columns(status: str, **values: Any) -> dict[str, Any]:
    """Every label column (``LABEL_COLUMNS``), None unless given."""
    return {k: status if k == "status" else values.get(k) for k in LABEL_COLUMNS}


def result_columns(
    result: ParseResult, class_names: tuple[str, ...], image: np.ndarray, brightness_factor: float = 1.0
) -> dict[str, Any]:
    """The label columns of an ``ok`` row from a ``ParseResult`` (persons, parts, semantic map,
    skin tone).

    Args:
        result: the engine's ``ParseResult`` for the model input.
        class_names: the model's class names.
        image: the ORIGINAL decoded pixels (never the brightened model input): skin tone is
            measured on them.
        brightness_factor: what was applied to the model input (1.0: nothing).
    """
    t0 = time.perf_counter()
    h, w = result.image_size
    persons = [_person(pid, person, result, class_names, image) for pid, person in enumerate(result.persons)]
    counts = {g: 0 for g in SKIN_GROUPS}
    for p in persons:
        counts[p["skin_tone"]["group"]] += 1
    semantic = [
        {"label_id": c, "label": class_names[c], "area": a, "mask": rle.encode(result.semantic == c)}
        for c, a in semantic_classes(result.semantic)
    ]
    stage = result.timings
    return _label_columns(
        STATUS_OK,
        width=int(w),
        height=int(h),
        num_persons=len(persons),
        persons=persons,
        semantic=semantic,
        skin_tone_groups=sorted(g for g in SKIN_GROUPS if g != "unknown" and counts[g]),
        skin_tone_counts=counts,
        brightened=brightness_factor != 1.0,
        brightness_factor=float(brightness_factor),
        timings={f"{k}_s": stage.get(k) for k in ENGINE_STAGES} | {"encode_s": time.perf_counter() - t0},
    )


def error_columns(
    kind: str, message: str, image: np.ndarray | None = None, brightness_factor: float | None = None
) -> dict[str, Any]:
    """The label columns of an ``error`` row (``image``/``brightness_factor`` when it was decoded)."""
    return _label_columns(
        STATUS_ERROR,
        width=None if image is None else int(image.shape[1]),
        height=None if image is None else int(image.shape[0]),
        error=message,
        error_kind=kind,
        brightened=None if brightness_factor is None else brightness_factor != 1.0,
        brightness_factor=brightness_factor,
        timings={},
    )


def finish_row(key: dict[str, Any], label: dict[str, Any], provenance: dict[str, Any], read_s, decode_s) -> dict:
    """Merge key columns (image_id, uri, shard), label columns, provenance and stage timings."""
    row = {"schema_version": SCHEMA_VERSION, **key, **label, **provenance}
    row["timings"] = {**label.get("timings", {}), "read_s": read_s, "decode_s": decode_s}
    return row
