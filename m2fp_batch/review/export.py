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

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import fiftyone as fo
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from m2fp_batch.annotate import rle
from m2fp_batch.annotate.parts import mask_bbox
from m2fp_batch.annotate.skin_tone import SOURCE_REVIEWED
from m2fp_batch.errors import UserError
from m2fp_batch.labels import class_name
from m2fp_batch.review import masks as mk
from m2fp_batch.review.build import INFO_KEY, TAG_REJECTED, TAG_REVIEWED, label_fingerprint
from m2fp_batch.schema import SKIN_GROUPS, STATUS_OK

log = logging.getLogger(__name__)

STATUS_REVIEWED = "reviewed"
STATUS_REJECTED = "rejected"
STATUS_UNREVIEWED = "unreviewed"
STATUS_NOT_IN_DATASET = "not_in_dataset"
REVIEW_FIELDS = [
    pa.field(
        "review_status",
        pa.string(),
        nullable=False,
        metadata={"doc": "reviewed, rejected, unreviewed or not_in_dataset (FiftyOne review)"},
    ),
    pa.field("review_edited", pa.bool_(), nullable=False, metadata={"doc": "labels differ from the job's"}),
]
ADDED_PERSON_SCORE = 1.0
# the estimator's own "not measured" result, for a person a reviewer added (schema v2+)
UNKNOWN_SKIN_TONE = {
    "lab": None,
    "ita": None,
    "ita_category": "unknown",
    "group": "unknown",
    "monk": None,
    "pixels": 0,
    "confidence": 0.0,
    "hue": None,
    "source": None,  # schema v3: not measured; readers derive it from the reviewed labels
}


class ReviewExportError(UserError, ValueError):
    """The dataset cannot be exported (message says what to fix)."""


@dataclass
class ExportStats:
    rows: int = 0
    by_status: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    edited: int = 0
    externalized_masks: int = 0
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "by_status": dict(self.by_status),
            "edited": self.edited,
            "externalized_masks": self.externalized_masks,
            "files": self.files,
        }


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
        old_parts = {int(q["label_id"]): q for q in (old or {}).get("parts") or []}
        area = int(full.sum())
        parts = []
        ids = np.unique(parts_map[full])
        for label_id in (int(i) for i in ids if i != 0):
            m = full & (parts_map == label_id)
            enc = rle.encode(m)
            prev = old_parts.get(label_id)
            parts.append(
                {
                    "label_id": label_id,
                    "label": class_name(label_id),
                    "area": int(m.sum()),
                    "fraction": float(m.sum() / area) if area else 0.0,
                    "bbox": list(mask_bbox(m)),
                    "score": prev["score"] if prev is not None and prev["mask"]["counts"] == enc["counts"] else None,
                    "mask": enc,
                }
            )
        person = dict(old) if old is not None else {}
        if old is None and int(original["schema_version"]) >= 2:
            person["skin_tone"] = dict(UNKNOWN_SKIN_TONE)
        person.update(
            person_id=len(persons),
            score=float(det.confidence) if det.confidence is not None else ADDED_PERSON_SCORE,
            bbox=list(mask_bbox(full) or (x0, y0, x0, y0)),
            area=area,
            mask=rle.encode(full),
            parts=parts,
        )
        if "skin_tone" in person and person["skin_tone"] is not None and det.has_field("skin_group"):
            group = det.get_field("skin_group")
            if group is not None and group != person["skin_tone"].get("group"):
                person["skin_tone"] = {**person["skin_tone"], "group": group, "source": SOURCE_REVIEWED}
        persons.append(person)
    return persons


def _signature(row: dict) -> tuple:
    """What counts as the labels of a row, for ``review_edited``."""
    sem = tuple((s["label_id"], s["mask"]["counts"]) for s in row.get("semantic") or [])
    per = tuple(
        (
            round(float(p["score"]), 6),
            p["mask"]["counts"],
            tuple((q["label_id"], q["mask"]["counts"]) for q in p["parts"]),
            (p.get("skin_tone") or {}).get("group"),
        )
        for p in row.get("persons") or []
    )
    return sem, per, row.get("skin_tone_groups"), row.get("skin_tone_counts")


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
    status = STATUS_REJECTED if TAG_REJECTED in tags else STATUS_REVIEWED if TAG_REVIEWED in tags else STATUS_UNREVIEWED
    row = dict(original)
    if original["status"] == STATUS_OK and labels_unchanged(sample):
        row.update(review_status=status, review_edited=False)
        return row
    if original["status"] == STATUS_OK:
        shape = (int(original["height"]), int(original["width"]))
        if sample.parsing is not None:
            row["semantic"] = mk.semantic_entries(_label_mask(sample.parsing, shape))
        row["persons"] = _persons(sample, original, shape)
        row["num_persons"] = len(row["persons"])
        if int(original["schema_version"]) >= 2:  # the image's skin-tone summary follows its persons
            groups = [p["skin_tone"]["group"] for p in row["persons"]]
            row["skin_tone_counts"] = {g: groups.count(g) for g in SKIN_GROUPS}
            row["skin_tone_groups"] = sorted({g for g in groups if g != "unknown"})
    row["review_status"] = status
    row["review_edited"] = _signature(row) != _signature(original)
    return row


def export_reviewed(name: str, out_dir: str | Path, rows_per_file: int = 5000) -> ExportStats:
    """Export the dataset ``name`` to ``out_dir`` (one Parquet file per source file, same name).

    Raises:
        ReviewExportError: no such dataset, it was not built by ``m2fp-batch review``, a source file is
            gone, or ``out_dir`` is inside the job output.
    """
    if not fo.dataset_exists(name):
        raise ReviewExportError(f"no FiftyOne dataset named {name!r} (datasets: {fo.list_datasets()})")
    ds = fo.load_dataset(name)
    info = ds.info.get(INFO_KEY)
    if not info:
        raise ReviewExportError(f"dataset {name!r} was not built by `m2fp-batch review` (no info.{INFO_KEY})")
    out = Path(out_dir).resolve()
    for src in info["sources"]:
        if out == Path(src) or Path(src) in out.parents:
            raise ReviewExportError(f"--out {out} is inside the job output {src}: choose a directory outside it")
    stats = ExportStats()
    stats.externalized_masks = externalize_inline_masks(ds, Path(info["mask_dir"]))
    sources = sorted(set(ds.distinct("source_parquet")))
    out.mkdir(parents=True, exist_ok=True)
    used_names: set[str] = set()
    for src in sources:
        path = Path(src)
        if not path.is_file():
            raise ReviewExportError(f"source file {path} of the dataset is gone: the export needs the job output")
        schema = pq.read_schema(path)
        schema = pa.schema(list(schema) + REVIEW_FIELDS, metadata=schema.metadata)
        originals = {r["image_id"]: r for r in pq.read_table(path).to_pylist()}
        samples = {s.image_id: s for s in ds.match(fo.ViewField("source_parquet") == src).iter_samples(progress=False)}
        rows = []
        for iid, original in originals.items():
            sample = samples.get(iid)
            if sample is None:
                row = {**original, "review_status": STATUS_NOT_IN_DATASET, "review_edited": False}
            else:
                row = reviewed_row(sample, original)
            stats.rows += 1
            stats.by_status[row["review_status"]] += 1
            stats.edited += bool(row["review_edited"])
            rows.append(row)
        stem = path.stem
        while stem in used_names:
            stem += "_"
        used_names.add(stem)
        for k in range(0, max(len(rows), 1), rows_per_file):
            target = out / (
                f"{stem}.parquet" if len(rows) <= rows_per_file else f"{stem}-{k // rows_per_file:03d}.parquet"
            )
            pq.write_table(pa.Table.from_pylist(rows[k : k + rows_per_file], schema=schema), target)
            stats.files.append(str(target))
    (out / "_export.json").write_text(json.dumps({"dataset": name, **stats.to_dict()}, indent=2) + "\n")
    log.info("exported %s: %s", name, stats.to_dict())
    return stats
