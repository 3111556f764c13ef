"""Write results in the compact parity layout of the official fixture
(``shared/reference/README.md``: ``paths``, ``classes``, ``img{i}_*``)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from m2fp_batch.inference.types import ParseResult


def raw_arrays(names: Sequence[str], results: Sequence[ParseResult], with_pred_masks: bool = False) -> dict:
    """The compact layout as a dict of arrays (image i = ``results[i]``)."""
    out: dict[str, np.ndarray] = {
        "paths": np.array([os.path.basename(n) for n in names]),
        "classes": np.array(results[0].class_names if results else []),
    }
    for i, r in enumerate(results):
        p = f"img{i}_"
        out[p + "orig_hw"] = np.array(r.image_size, np.int64)
        out[p + "input_hw"] = np.array(r.input_size, np.int64)
        out[p + "padded_hw"] = np.array(r.padded_size, np.int64)
        out[p + "pred_logits"] = r.pred_logits.astype(np.float32)
        if with_pred_masks and r.pred_masks is not None:
            out[p + "pred_masks"] = r.pred_masks.astype(np.float16)
        out[p + "semantic_label"] = r.semantic.astype(np.uint8)
        if r.semantic_score is None:
            raise ValueError("raw output needs semantic scores (keep_semantic_score=True)")
        out[p + "semantic_max"] = r.semantic_score.astype(np.float16)
        names_ = r.class_names
        labels = [names_[c] for c in r.parts.labels] + [names_[c] for c in r.humans.labels]
        out[p + "labels"] = np.array(labels, dtype=str)
        out[p + "scores"] = np.concatenate([r.parts.scores, r.humans.scores]).astype(np.float64)
        out[p + "masks_packed"] = np.concatenate([r.parts.packed_masks(), r.humans.packed_masks()], axis=0)
    return out


def write_raw(
    path: str | os.PathLike, names: Sequence[str], results: Sequence[ParseResult], with_pred_masks: bool = False
) -> None:
    """Save :func:`raw_arrays` with ``np.savez_compressed``."""
    np.savez_compressed(path, **raw_arrays(names, results, with_pred_masks))
