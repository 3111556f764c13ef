"""Per-group parsing accuracy against ground-truth label PNGs (CIHP style).

Ground truth: one single-channel PNG per image, ``GT_DIR/<image_id>.png``, whose pixel values
are CIHP class ids 0..19 (values >= 20, e.g. 255, are ignored). The prediction is the job's
semantic map (the ``semantic`` column, COCO RLE per class). For every person the job found, the
person's box is the evaluation region of its skin-tone group; per group, the confusion matrix
sums over the union of its persons' boxes in each image, and the per-class IoU and the mIoU
(mean over the classes present, background included) come from that sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from m2fp_batch.labels import MaskSizeError, semantic_map
from m2fp_batch.report.data import COL_SEMANTIC, JobOutput, ReportError
from m2fp_batch.report.metrics import NUM_CLASSES, image_group_confusions, miou_table
from m2fp_batch.schema import STATUS_OK


@dataclass(frozen=True)
class GroundTruthResult:
    ious: pd.DataFrame  # class x group
    summary: pd.DataFrame  # group, mIoU, pixels, gap
    confusions: dict[str, np.ndarray]
    images_evaluated: int
    images_without_gt: list[str]


def read_label_png(path: str | Path) -> np.ndarray:
    """(H, W) uint8 class ids of a label PNG (mode L or P)."""
    with Image.open(path) as im:
        if im.mode not in ("L", "P"):
            raise ReportError(
                f"{path}: ground truth must be a single-channel class-id PNG (mode L or P), got {im.mode}"
            )
        return np.asarray(im, dtype=np.uint8)


def evaluate(job: JobOutput, gt_dir: str | Path) -> GroundTruthResult:
    """Per-group IoU of the job's semantic maps against the label PNGs in ``gt_dir``."""
    gt_root = Path(gt_dir)
    if not gt_root.is_dir():
        raise ReportError(f"ground-truth directory {gt_root} does not exist")
    if COL_SEMANTIC not in job.table.column_names:
        raise ReportError("the job output was read without its semantic maps: load it with with_semantic=True")
    by_image = {i: g for i, g in job.persons.groupby("image_index")}
    totals: dict[str, np.ndarray] = {}
    evaluated, missing = 0, []
    for i, row in job.images.iterrows():
        if row["status"] != STATUS_OK or i not in by_image:
            continue
        path = gt_root / f"{row['image_id']}.png"
        if not path.is_file():
            missing.append(str(row["image_id"]))
            continue
        gt = read_label_png(path)
        shape = (int(row["height"]), int(row["width"]))
        if gt.shape != shape:
            raise ReportError(
                f"{path}: ground truth is {gt.shape[1]}x{gt.shape[0]}, the image is {shape[1]}x{shape[0]}"
            )
        try:
            pred = semantic_map({COL_SEMANTIC: job.table.column(COL_SEMANTIC)[i].as_py()}, shape)
        except MaskSizeError as e:
            raise ReportError(str(e)) from e
        p = by_image[i]
        boxes = p[["x0", "y0", "x1", "y1"]].to_numpy()
        for g, conf in image_group_confusions(pred, gt, boxes, list(p["group"]), NUM_CLASSES).items():
            totals[g] = totals.get(g, 0) + conf
        evaluated += 1
    if evaluated == 0:
        raise ReportError(f"no image with people has a ground-truth PNG in {gt_root} (expected <image_id>.png)")
    ious, summary = miou_table(totals)
    return GroundTruthResult(ious, summary, totals, evaluated, missing)
