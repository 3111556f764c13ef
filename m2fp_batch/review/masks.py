"""Job rows <-> label maps and mask PNG files (pure numpy / PIL / pyarrow; no FiftyOne).

Reading goes through the shared reader (:mod:`m2fp_batch.labels`: shards, rows, label maps).
Writing: the review dataset keeps masks in PNG files under a mask directory (never inline in
MongoDB), one folder per image.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from m2fp_batch.errors import UserError
from m2fp_batch.labels import LabelsError, LabelSource, open_labels
from m2fp_batch.labels.layout import safe_name

REVIEW_DIRNAME = "_review"


class ReviewInputError(UserError, ValueError):
    """The job output cannot be turned into a review dataset (message says what to fix)."""


def open_job_output(output_dir: str | Path) -> LabelSource:
    """The job output (or export-reviewed dir) through the shared reader.

    Raises:
        ReviewInputError: the directory does not exist or holds no job Parquet file.
    """
    try:
        return open_labels(output_dir)
    except LabelsError as e:
        raise ReviewInputError(str(e)) from e


def iter_rows(source: LabelSource) -> Iterator[tuple[str, dict]]:
    """Yield (file, row dict) for every row, checking the schema version.

    Raises:
        ReviewInputError: a file is not a job output file or a row has an unknown schema version.
    """
    try:
        yield from source.iter_rows()
    except LabelsError as e:
        raise ReviewInputError(str(e)) from e


def mask_folder(mask_dir: str | Path, image_id: str) -> Path:
    """``mask_dir/<2 chars>/<key>``: where one image's mask PNGs live."""
    key = safe_name(image_id)
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
