"""One output row (a dict following ``m2fp_batch.schema``) per image: parse results and errors."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from m2fp_batch.annotate import rle
from m2fp_batch.annotate.parts import person_parts, semantic_classes
from m2fp_batch.schema import SCHEMA_VERSION, STATUS_ERROR, STATUS_OK


def _bbox(b) -> list[int]:
    return [int(v) for v in b]


def result_columns(result, class_names: tuple[str, ...]) -> dict[str, Any]:
    """The label columns of an ``ok`` row from a ``ParseResult`` (persons, parts, semantic map)."""
    t0 = time.perf_counter()
    h, w = result.image_size
    shape = (h, w)
    persons = []
    for pid, person in enumerate(result.persons):
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
        persons.append(
            {
                "person_id": pid,
                "score": float(person.score),
                "bbox": _bbox(person.bbox),
                "area": int(person.area),
                "mask": rle.encode_crop(person.mask, person.bbox, shape),
                "parts": parts,
            }
        )
    semantic = [
        {"label_id": c, "label": class_names[c], "area": a, "mask": rle.encode(result.semantic == c)}
        for c, a in semantic_classes(result.semantic)
    ]
    timings = result.timings
    return {
        "width": int(w),
        "height": int(h),
        "status": STATUS_OK,
        "error": None,
        "error_kind": None,
        "num_persons": len(persons),
        "persons": persons,
        "semantic": semantic,
        "timings": {
            "preprocess_s": timings.get("preprocess"),
            "forward_s": timings.get("forward"),
            "postprocess_s": timings.get("postprocess"),
            "encode_s": time.perf_counter() - t0,
        },
    }


def error_columns(kind: str, message: str, image: np.ndarray | None = None) -> dict[str, Any]:
    """The label columns of an ``error`` row."""
    return {
        "width": None if image is None else int(image.shape[1]),
        "height": None if image is None else int(image.shape[0]),
        "status": STATUS_ERROR,
        "error": message,
        "error_kind": kind,
        "num_persons": None,
        "persons": None,
        "semantic": None,
        "timings": {},
    }


def finish_row(key: dict[str, Any], label: dict[str, Any], provenance: dict[str, Any], read_s, decode_s) -> dict:
    """Merge key columns (image_id, uri, shard), label columns, provenance and stage timings."""
    row = {"schema_version": SCHEMA_VERSION, **key, **label, **provenance}
    row["timings"] = {**label.get("timings", {}), "read_s": read_s, "decode_s": decode_s}
    return row
