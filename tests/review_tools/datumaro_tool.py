"""Runs in Datumaro's own venv (``.venv-dm``, ``make review-tools``), as CVAT drives it: read or rewrite a
Segmentation mask 1.1 directory.

    python datumaro_tool.py read DIR OUT.npz
        every item's instance masks as Datumaro loads them, in instance-index order: ``<item>/<k>`` ->
        (H, W) bool, and
        ``labels`` -> JSON {item: [label name per instance]}
    python datumaro_tool.py edit DIR DEST EDITS.npz
        load DIR, replace the masks named in EDITS (``<item>/<k>`` -> new mask, k as in ``read``),
        and write DEST with Datumaro's voc_segmentation exporter (what CVAT's export runs)
"""

from __future__ import annotations

import json
import sys

import numpy as np
from datumaro.components.annotation import AnnotationType, Mask
from datumaro.components.dataset import Dataset


def _masks(item) -> list:
    """The item's masks in instance-index order (Datumaro groups them by label; ``group`` is the index)."""
    return sorted((a for a in item.annotations if a.type == AnnotationType.mask), key=lambda a: a.group)


def read(src: str, out: str) -> None:
    ds = Dataset.import_from(src, "voc_segmentation")
    names = ds.categories()[AnnotationType.label]
    arrays, labels = {}, {}
    for item in ds:
        masks = _masks(item)
        labels[item.id] = [names[m.label].name for m in masks]
        for k, m in enumerate(masks):
            arrays[f"{item.id}/{k}"] = np.asarray(m.image, dtype=bool)
    np.savez_compressed(out, labels=json.dumps(labels), **arrays)


def edit(src: str, dest: str, edits_path: str) -> None:
    ds = Dataset.import_from(src, "voc_segmentation")
    edits = dict(np.load(edits_path))
    for item in list(ds):
        masks, rest = _masks(item), [a for a in item.annotations if a.type != AnnotationType.mask]
        new = []
        for k, m in enumerate(masks):
            image = edits.get(f"{item.id}/{k}")
            new.append(m if image is None else Mask(image=image.astype(np.uint8), label=m.label, group=m.group))
        ds.put(item.wrap(annotations=rest + new))
    ds.export(dest, "voc_segmentation", save_media=False, apply_colormap=True, label_map="source")


if __name__ == "__main__":
    {"read": read, "edit": edit}[sys.argv[1]](*sys.argv[2:])
