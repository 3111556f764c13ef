"""``m2fp-batch cvat pull LABELS --cvat DIR --out REVIEWED``: a (fixed) Segmentation mask 1.1 export as reviewed labels.

The rules (which person an instance belongs to, what stays the job's) are in :mod:`.cvat`; the
layout written is :mod:`m2fp_batch.reviewed`'s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from m2fp_batch.formats import cvat
from m2fp_batch.labels import decode_mask, open_labels, part_instance_map, part_instances
from m2fp_batch.labels.layout import safe_name
from m2fp_batch.reviewed import (
    ReviewedSummary,
    ReviewRowError,
    build_person,
    check_destination,
    finish_row,
    person_mask,
    review_source,
)
from m2fp_batch.schema import NOT_IN_DATASET, REVIEWED, STATUS_OK

__all__ = ["item_persons", "pull"]

log = logging.getLogger(__name__)


def _owner(m: np.ndarray, visible_owner: np.ndarray, person_masks: list[np.ndarray]) -> int | None:
    """The job person an instance belongs to: whose visible parts it overlaps most, else whose mask; None: none."""
    ids, counts = np.unique(visible_owner[m], return_counts=True)
    counts, ids = counts[ids >= 0], ids[ids >= 0]
    if ids.size:
        return int(ids[np.argmax(counts)])
    overlap = [int((m & pm).sum()) for pm in person_masks]
    return int(np.argmax(overlap)) if overlap and max(overlap) > 0 else None


def _assign(row: Mapping[str, Any], item: cvat.CvatItem, person_masks: list[np.ndarray]):
    """Per job person its parts (class id -> mask) from the export, and the parts of new persons."""
    visible_owner = np.array([-1] + [q.person_id for q in part_instances(row)])[part_instance_map(row)]
    parts: dict[int, dict[int, np.ndarray]] = {}
    new: list[dict[int, np.ndarray]] = []
    for label_id, m in item.instances:
        k = _owner(m, visible_owner, person_masks)
        if k is None:
            new.append({label_id: m})
            continue
        owned = parts.setdefault(k, {})
        owned[label_id] = owned[label_id] | m if label_id in owned else m
    return parts, new


def _person_parts(old: Mapping, got: dict[int, np.ndarray], visible: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """The parts of a job person: unchanged visible pixels -> the job's mask (hidden pixels too)."""
    full_old = {int(q["label_id"]): decode_mask(q["mask"]) for q in old.get("parts") or []}
    out = {lid: m for lid, m in full_old.items() if lid not in visible}  # parts the export cannot show
    for lid, m in got.items():
        out[lid] = full_old[lid] if lid in visible and np.array_equal(m, visible[lid]) else m
    return out


def item_persons(row: Mapping[str, Any], item: cvat.CvatItem) -> list[dict]:
    """The ``persons`` of a row as the export's instances draw them (rules in :mod:`.cvat`).

    Raises:
        ReviewRowError: the item's PNGs are not the image's size.
    """
    shape = (int(row["height"]), int(row["width"]))
    if any(m.shape != shape for _, m in item.instances):
        raise ReviewRowError(f"item {item.name!r}: masks are not {shape[1]}x{shape[0]}, the image's size")
    person_masks = list(cvat.iter_person_masks(row))
    parts, new = _assign(row, item, person_masks)
    visible: dict[int, dict[int, np.ndarray]] = {}
    for k, lid, m in cvat.visible_parts(row):
        if m.any():
            visible.setdefault(k, {})[lid] = m
    version, persons = int(row["schema_version"]), []
    for k, old in enumerate(row.get("persons") or []):
        got = parts.get(k, {})
        if not got and visible.get(k):
            continue  # every part it showed was deleted: the person is gone
        final = _person_parts(old, got, visible.get(k, {}))
        old_parts = [decode_mask(q["mask"]) for q in old.get("parts") or []]
        full = person_mask(person_masks[k], old_parts, final.values())
        persons.append(build_person(old, full, final, person_id=len(persons), score=None, schema_version=version))
    for added in new:
        full = np.logical_or.reduce(list(added.values()))
        persons.append(build_person(None, full, added, person_id=len(persons), score=None, schema_version=version))
    return persons


def _reviewed_row(row: dict, root: Path, items: Mapping[str, str], labelmap) -> dict:
    name = items.get(safe_name(str(row["image_id"])))
    if name is None or row["status"] != STATUS_OK:
        return finish_row(row, NOT_IN_DATASET)
    try:
        item = cvat.read_item(root, name, labelmap)
    except cvat.CvatError as e:
        raise ReviewRowError(str(e)) from e
    return finish_row(row, REVIEWED, item_persons(row, item))


def pull(
    labels: str, cvat_dir: str | Path, dest: str | Path, *, unannotated: str = "keep", rows_per_file: int = 5000
) -> ReviewedSummary:
    """Write the reviewed layout of the job output ``labels`` with the labels of the CVAT export ``cvat_dir``.

    Raises:
        CvatError: ``cvat_dir`` is not a Segmentation mask 1.1 export; LabelsError: ``labels`` is not a
        job output; UserError: ``dest`` is inside ``labels``.
    """
    t0 = time.perf_counter()
    root = Path(cvat_dir).expanduser().resolve()
    if not root.is_dir():
        raise cvat.CvatError(f"--cvat {root} is not a directory: unzip CVAT's 'Segmentation mask 1.1' export there")
    labelmap = cvat.read_labelmap(root)
    names = cvat.read_names(root)
    source = open_labels(labels)
    dest = Path(dest).expanduser().resolve()
    check_destination(dest, source)
    summary = ReviewedSummary(source=str(labels), dest=str(dest), details={"cvat": str(root), "items": len(names)})
    items = {n: n for n in names}
    seen: set[str] = set()

    def review_row(row: dict) -> dict:
        seen.add(safe_name(str(row["image_id"])))
        return _reviewed_row(row, root, items, labelmap)

    meta = {"cvat": str(root), "source": str(labels)}
    review_source(source, dest, review_row, meta, unannotated=unannotated, rows_per_file=rows_per_file, summary=summary)
    summary.details["unmatched_items"] = sorted(set(names) - seen)  # items of the export no job row names
    summary.seconds = round(time.perf_counter() - t0, 3)
    log.info("cvat pull: %s", {k: v for k, v in summary.to_dict().items() if k != "errors"})
    return summary
