"""Model quality on labelled data: mIoU overall, per class and per skin-tone group of the
ground truth's people, computed with the fairness report's functions
(:mod:`m2fp_batch.report.metrics`: a group's region is the union of its people's boxes)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from m2fp_batch.annotate.brightness import model_input
from m2fp_batch.annotate.parts import mask_bbox
from m2fp_batch.data.skin import count_sources, present_sources
from m2fp_batch.report.metrics import NUM_CLASSES, confusion, image_group_confusions, iou_from_confusion, miou_table
from m2fp_batch.settings import EngineSettings
from m2fp_batch.train.targets import person_groups


@dataclass
class Evaluation:
    """overall: (C, C) confusion [gt, pred] over whole images; by_group: one per group."""

    overall: np.ndarray
    by_group: dict[str, np.ndarray]
    images: int
    sources: Counter = field(default_factory=Counter)  # people per skin-tone source (measured, derived, ...)

    def per_class(self, class_names: Sequence[str]) -> pd.Series:
        return pd.Series(iou_from_confusion(self.overall), index=list(class_names[:NUM_CLASSES]))

    def miou(self) -> float:
        return float(np.nanmean(iou_from_confusion(self.overall)))

    def group_table(self) -> pd.DataFrame:
        """group, mIoU, pixels, gap to the best group (the report's table)."""
        return miou_table(self.by_group)[1]

    def to_dict(self, class_names: Sequence[str]) -> dict:
        per_class = self.per_class(class_names)
        return {
            "images": self.images,
            "mIoU": self.miou(),
            "per_class": {k: (None if np.isnan(v) else float(v)) for k, v in per_class.items()},
            "by_group": self.group_table().to_dict(orient="records"),
            "skin_tone_sources": count_sources([list(self.sources.elements())]),
        }


def person_boxes(humans: np.ndarray) -> dict[int, tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) end-exclusive box of every person id."""
    return {int(p): mask_bbox(humans == p) for p in np.unique(humans) if p != 0}


def add_image(ev: Evaluation, pred: np.ndarray, sample: dict) -> None:
    """Accumulate one image's prediction against its ground-truth sample."""
    gt = np.asarray(sample["semantic"])
    humans = np.asarray(sample["humans"])
    ev.overall += confusion(pred, gt, np.ones(gt.shape, bool))
    boxes = person_boxes(humans)
    groups = person_groups(humans, sample.get("skin_tones"))
    ids = sorted(boxes)
    for g, conf in image_group_confusions(pred, gt, [boxes[i] for i in ids], [groups[i] for i in ids]).items():
        ev.by_group[g] = ev.by_group.get(g, 0) + conf
    ev.sources.update(present_sources(humans, sample.get("skin_sources")))
    ev.images += 1


def evaluate_parser(parser, dataset: Sequence[dict], settings: EngineSettings | None = None) -> Evaluation:
    """Parse every sample's image with ``parser`` (an ``M2FPParser``) and score it; the model sees the
    job's model input for ``settings`` (the photo itself when None)."""
    ev = Evaluation(np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64), {}, 0)
    for i in range(len(dataset)):
        sample = dataset[i]
        image = np.asarray(sample["image"])
        x = model_input(image, settings is not None and settings.adaptive_brightness)[0]
        pred = parser.parse([x], keep_semantic_score=False)[0].semantic
        add_image(ev, pred, sample)
    return ev
