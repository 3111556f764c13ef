"""Rows (job Parquet rows, or /api/parse answers in row form) of another engine against torch's,
within the parity criteria's tolerance: other kernels round differently, so a pixel or a person
near a threshold of the random-weight model may flip."""

from __future__ import annotations

import numpy as np

from m2fp_batch.annotate import rle


def semantic_of(row: dict) -> np.ndarray:
    sem = np.zeros((row["height"], row["width"]), np.uint8)
    for s in row["semantic"]:
        sem[rle.decode(s["mask"])] = s["label_id"]
    return sem


def assert_rows_close(got: dict, ref: dict) -> None:
    """Same status and size; semantic labels equal on >= 99.9 % of pixels; persons within one, and
    the matched persons' scores within 2e-3 and mask IoU >= 0.98 (check_parity.py's criteria)."""
    assert got["status"] == ref["status"] == "ok", (got.get("error"), ref.get("error"))
    assert (got["height"], got["width"]) == (ref["height"], ref["width"])
    assert (semantic_of(got) == semantic_of(ref)).mean() >= 0.999
    assert abs(got["num_persons"] - ref["num_persons"]) <= 1
    for a, b in zip(
        sorted(got["persons"], key=lambda p: -p["score"]), sorted(ref["persons"], key=lambda p: -p["score"])
    ):
        ma, mb = rle.decode(a["mask"]), rle.decode(b["mask"])
        assert abs(a["score"] - b["score"]) <= 2e-3
        assert (ma & mb).sum() / max((ma | mb).sum(), 1) >= 0.98
