"""Job rows <-> label maps and mask PNG files (pure numpy / PIL / pyarrow; no FiftyOne).

Reading: the job's Parquet rows carry every mask as a COCO RLE (see ``m2fp_batch/schema.py``);
here they become (H, W) label maps and per-person masks. Writing: the review dataset keeps masks
in PNG files under a mask directory (never inline in MongoDB), one folder per image.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image
from pycocotools import mask as mask_utils

from m2fp_batch.annotate import rle
from m2fp_batch.annotate.palette import CIHP_CLASSES

SUPPORTED_SCHEMA_VERSIONS = (1, 2)
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
REVIEW_DIRNAME = "_review"


class ReviewInputError(ValueError):
    """The job output cannot be turned into a review dataset (message says what to fix)."""


def parquet_files(output_dir: str | Path) -> list[Path]:
    """The job's Parquet files under ``output_dir``, sorted.

    Like every Parquet reader of the job output, names starting with ``_`` or ``.`` (the input
    listing, temporary files, ``_review``) are skipped.

    Raises:
        ReviewInputError: the directory does not exist or holds no Parquet file.
    """
    root = Path(output_dir)
    if not root.is_dir():
        raise ReviewInputError(f"job output directory {root} does not exist")
    files = sorted(
        p
        for p in root.rglob("*.parquet")
        if p.is_file() and not any(part.startswith(("_", ".")) for part in p.relative_to(root).parts)
    )
    if not files:
        raise ReviewInputError(f"no .parquet files under {root}: is it the --output of `m2fp-batch run`?")
    return files


def iter_rows(files: list[Path], batch_size: int = 256) -> Iterator[tuple[Path, dict]]:
    """Yield (file, row dict) for every row of the files, checking the schema version.

    Raises:
        ReviewInputError: a row has a schema version this code does not know.
    """
    for f in files:
        pf = pq.ParquetFile(f)
        if "schema_version" not in pf.schema_arrow.names or "image_id" not in pf.schema_arrow.names:
            raise ReviewInputError(f"{f} is not a job output file (no schema_version / image_id column)")
        for batch in pf.iter_batches(batch_size=batch_size):
            for row in batch.to_pylist():
                v = row["schema_version"]
                if v not in SUPPORTED_SCHEMA_VERSIONS:
                    raise ReviewInputError(
                        f"{f}: row {row['image_id']!r} has schema_version {v}; this m2fp-batch reads "
                        f"{SUPPORTED_SCHEMA_VERSIONS}: upgrade m2fp-batch"
                    )
                yield f, row


def mask_key(image_id: str) -> str:
    """A file-system safe folder name for an image id (the id itself when it is safe)."""
    if _SAFE_ID.match(image_id) and image_id not in (".", ".."):
        return image_id
    return "id-" + hashlib.sha1(image_id.encode("utf-8")).hexdigest()[:20]


def mask_folder(mask_dir: str | Path, image_id: str) -> Path:
    """``mask_dir/<2 chars>/<key>``: where one image's mask PNGs live."""
    key = mask_key(image_id)
    return Path(mask_dir) / key[-2:] / key


def write_png(path: Path, array: np.ndarray) -> None:
    """Write a uint8 (H, W) array as a grayscale PNG, atomically (tmp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8), mode="L").save(tmp, format="PNG", compress_level=1)
    os.replace(tmp, path)


def read_png(path: str | Path) -> np.ndarray:
    """A mask PNG as a 2-D uint8 array (first channel when the PNG has several)."""
    with Image.open(path) as im:
        a = np.asarray(im)
    if a.ndim == 3:
        a = a[..., 0]
    return a.astype(np.uint8, copy=False)


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


def decode(mask: dict) -> np.ndarray:
    """A job RLE ``{size, counts: str}`` -> (H, W) bool, without copying pycocotools' 0/1 array."""
    h, w = (int(v) for v in mask["size"])
    return mask_utils.decode({"size": [h, w], "counts": mask["counts"].encode("ascii")}).view(bool)


def semantic_map(row: dict, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 class ids of the row's image-level parse (0 = background)."""
    out = np.zeros(shape, dtype=np.uint8)
    for cls in row.get("semantic") or []:
        out[decode(cls["mask"])] = int(cls["label_id"])
    return out


def decode_persons(row: dict) -> list[DecodedPerson]:
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
                mask=decode(p["mask"]),
                part_ids=[int(q["label_id"]) for q in parts],
                part_masks=[decode(q["mask"]) for q in parts],
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


def class_name(label_id: int) -> str:
    """CIHP class name of a label id."""
    return CIHP_CLASSES[label_id] if 0 <= label_id < len(CIHP_CLASSES) else f"class_{label_id}"


def bbox_of(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight (x0, y0, x1, y1), end-exclusive, of a bool mask; None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def semantic_entries(label_map: np.ndarray) -> list[dict]:
    """The ``semantic`` column value of a label map: one entry per class present except 0."""
    ids, counts = np.unique(label_map, return_counts=True)
    return [
        {"label_id": int(i), "label": class_name(int(i)), "area": int(c), "mask": rle.encode(label_map == i)}
        for i, c in zip(ids, counts, strict=True)
        if i != 0
    ]
