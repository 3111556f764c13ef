"""Write the reviewed labels of a review dataset back to Parquet, in the job's output schema.

For every row of the job output the dataset was built from, one row is written with the same
columns (passthrough included) and two more:

* ``review_status``: ``reviewed`` or ``rejected`` (the sample's tag), ``unreviewed``, or
  ``not_in_dataset`` (the sample was deleted from the dataset; the job's labels are kept);
* ``review_edited``: whether the exported labels differ from the job's.

The label columns come from the dataset, as reviewers left it: ``semantic`` from the ``parsing``
mask, ``persons`` from the ``people`` detections whose label is ``person`` (mask, box, score) and
their parts from the ``person_parts`` mask inside each person. A part keeps the job's score when its
pixels are unchanged, else the score is null; a person a reviewer added gets score 1.0. Masks edited
in CVAT / Label Studio come back inline (``load_annotations``): they are first moved to PNG files.

Samples whose labels are exactly as imported (the ``imported_labels`` fingerprint of mask paths,
boxes, labels, scores and skin groups still matches, and no mask file is newer than the import)
keep the job's label columns as they are, without decoding anything: exporting an unedited
dataset is fast, and bit-identical to the job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from m2fp_batch.annotate.skin_tone import SOURCE_REVIEWED
from m2fp_batch.errors import UserError
from m2fp_batch.review import masks as mk
from m2fp_batch.review.build import label_fingerprint
from m2fp_batch.review.fields import INFO_KEY
from m2fp_batch.review.fo import fo
from m2fp_batch.reviewed import ReviewedSummary, build_person, finish_row, semantic_entries, write_reviewed
from m2fp_batch.schema import NOT_IN_DATASET, REJECTED, REVIEWED, STATUS_OK, UNREVIEWED

log = logging.getLogger(__name__)


class ReviewExportError(UserError, ValueError):
    """The dataset cannot be exported (message says what to fix)."""


__all__ = [
    "ReviewExportError",
    "export_reviewed",
    "externalize_inline_masks",
    "labels_unchanged",
    "reviewed_row",
]


def _label_mask(label, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A Segmentation's or Detection's mask, inline or from its file."""
    m = label.mask if label.mask is not None else mk.read_png(label.mask_path) if label.mask_path else None
    if m is None:
        raise ReviewExportError(f"{type(label).__name__} {label.id} has neither mask nor mask_path")
    m = np.asarray(m)
    if m.ndim == 3:
        m = m[..., 0]
    if shape is not None and m.shape != shape:
        m = np.asarray(Image.fromarray(m.astype(np.uint8)).resize((shape[1], shape[0]), Image.NEAREST))
    return m


def externalize_inline_masks(ds: fo.Dataset, mask_dir: Path) -> int:
    """Move masks stored inline (e.g. by ``load_annotations``) to PNG files; returns how many."""
    moved = 0
    for path in ("parsing", "person_parts"):
        if path not in ds.get_field_schema():
            continue
        view = ds.exists(f"{path}.mask")
        for sample in view.iter_samples(autosave=True, progress=False):
            label = sample[path]
            out = mk.mask_folder(mask_dir, sample.image_id) / f"{path}.edited.png"
            mk.write_png(out, _label_mask(label))
            label.mask = None
            label.mask_path = str(out)
            moved += 1
    if "people" in ds.get_field_schema():
        view = ds.filter_labels("people", fo.ViewField("mask") != None, only_matches=True)  # noqa: E711
        for sample in view.iter_samples(autosave=True, progress=False):
            for det in sample.people.detections:
                if det.mask is None:
                    continue
                out = mk.mask_folder(mask_dir, sample.image_id) / f"person_{det.id}.edited.png"
                mk.write_png(out, (np.asarray(det.mask) > 0).astype(np.uint8) * 255)
                det.mask = None
                det.mask_path = str(out)
                moved += 1
    return moved


def _px_box(det: fo.Detection, w: int, h: int) -> tuple[int, int, int, int]:
    bx, by, bw, bh = det.bounding_box
    x0, y0 = max(0, round(bx * w)), max(0, round(by * h))
    x1, y1 = min(w, round((bx + bw) * w)), min(h, round((by + bh) * h))
    return x0, y0, max(x1, x0), max(y1, y0)


def _persons(sample: fo.Sample, original: dict, shape: tuple[int, int]) -> list[dict]:
    h, w = shape
    parts_map = (
        _label_mask(sample.person_parts, shape) if sample.person_parts is not None else np.zeros(shape, np.uint8)
    )
    by_id = {int(p["person_id"]): p for p in original.get("persons") or []}
    dets = [] if sample.people is None else [d for d in sample.people.detections if d.label == "person"]
    persons = []
    for det in dets:
        x0, y0, x1, y1 = _px_box(det, w, h)
        full = np.zeros(shape, dtype=bool)
        if det.mask is not None or det.mask_path:
            full[y0:y1, x0:x1] = _label_mask(det, (y1 - y0, x1 - x0)) > 0
        else:
            full[y0:y1, x0:x1] = True
        old = by_id.get(det.get_field("person_id")) if det.has_field("person_id") else None
        ids = [int(i) for i in np.unique(parts_map[full]) if i != 0]
        person = build_person(
            old,
            full,
            {i: full & (parts_map == i) for i in ids},
            person_id=len(persons),
            score=det.confidence,
            schema_version=int(original["schema_version"]),
        )
        if "skin_tone" in person and person["skin_tone"] is not None and det.has_field("skin_group"):
            group = det.get_field("skin_group")
            if group is not None and group != person["skin_tone"].get("group"):
                person["skin_tone"] = {**person["skin_tone"], "group": group, "source": SOURCE_REVIEWED}
        persons.append(person)
    return persons


def labels_unchanged(sample: fo.Sample) -> bool:
    """True when the sample's labels are exactly as imported: same fingerprint, mask files untouched."""
    if not sample.has_field("imported_labels") or sample["imported_labels"] != label_fingerprint(sample):
        return False
    paths = [sample[k].mask_path for k in ("parsing", "person_parts") if sample[k] is not None]
    paths += [d.mask_path for d in (sample.people.detections if sample.people is not None else [])]
    imported_at = float(sample["imported_at"])
    return all(p is not None and Path(p).stat().st_mtime <= imported_at for p in paths)


def reviewed_row(sample: fo.Sample, original: dict) -> dict:
    """The output row of one sample: the job's row with the reviewed labels and review columns."""
    tags = set(sample.tags)
    status = REJECTED if REJECTED in tags else REVIEWED if REVIEWED in tags else UNREVIEWED
    if original["status"] != STATUS_OK or labels_unchanged(sample):
        return finish_row(original, status)
    shape = (int(original["height"]), int(original["width"]))
    semantic = semantic_entries(_label_mask(sample.parsing, shape)) if sample.parsing is not None else None
    return finish_row(original, status, _persons(sample, original, shape), semantic=semantic)


def export_reviewed(name: str, dest: str | Path, rows_per_file: int = 5000) -> ReviewedSummary:
    """Export the dataset ``name`` into the reviewed dir ``dest`` (one Parquet file per source file, same name).

    Raises:
        ReviewExportError: no such dataset, it was not built by ``m2fp-batch review``, a source file is
            gone, or ``dest`` is inside the job output.
    """
    t0 = time.perf_counter()
    if not fo.dataset_exists(name):
        raise ReviewExportError(f"no FiftyOne dataset named {name!r} (datasets: {fo.list_datasets()})")
    ds = fo.load_dataset(name)
    info = ds.info.get(INFO_KEY)
    if not info:
        raise ReviewExportError(f"dataset {name!r} was not built by `m2fp-batch review` (no info.{INFO_KEY})")
    if ds.media_type == "video":
        raise ReviewExportError(
            f"dataset {name!r} is a video dataset: export-reviewed writes the photos' dataset "
            f"({info.get('image_dataset')!r}); the frames' reviews are not exported from FiftyOne"
        )
    dest = Path(dest).resolve()
    for src in info["sources"]:
        if dest == Path(src) or Path(src) in dest.parents:
            raise ReviewExportError(f"--out {dest} is inside the job output {src}: choose a directory outside it")
    moved = externalize_inline_masks(ds, Path(info["mask_dir"]))
    sources = sorted(set(ds.distinct("source_parquet")))
    missing = [src for src in sources if not Path(src).is_file()]
    if missing:
        raise ReviewExportError(f"source file {missing[0]} of the dataset is gone: the export needs the job output")

    def reviewed_files() -> Iterator[tuple[str, pa.Schema, list[dict]]]:
        for src in sources:
            view = ds.match(fo.ViewField("source_parquet") == src)
            samples = {s.image_id: s for s in view.iter_samples(progress=False)}
            rows = [
                reviewed_row(samples[r["image_id"]], r) if r["image_id"] in samples else finish_row(r, NOT_IN_DATASET)
                for r in pq.read_table(src).to_pylist()
            ]
            yield src, pq.read_schema(src), rows

    meta = {"dataset": name, "externalized_masks": moved}
    summary = ReviewedSummary(source=name, dest=str(dest), details=meta)
    write_reviewed(dest, reviewed_files(), meta, rows_per_file, summary=summary)
    summary.seconds = round(time.perf_counter() - t0, 3)
    log.info("exported %s: %s", name, summary.to_dict())
    return summary
