"""The reviewed layout (``export-reviewed``, ``label-studio pull``, ``cvat pull``): rows and files, no FiftyOne.

Every review tool writes the same directory: one Parquet file per source file of the job output
(``<source stem>[-NNN].parquet``, the job's columns, passthrough included) plus four columns, and
``_export.json`` last, which lists the files (the reader in :mod:`m2fp_batch.labels` reads only those):

* ``review_status``: ``reviewed``, ``rejected``, ``unreviewed`` (in the tool, no verdict yet) or
  ``not_in_dataset`` (never sent to the tool); the job's labels are kept for the last three;
* ``review_edited``: whether the labels differ from the job's;
* ``review_by`` / ``review_time``: who gave the verdict and when (ISO 8601), null when unknown.

Persons are rebuilt from masks by :func:`build_person`: a part whose pixels are unchanged keeps the
job's RLE and score, an edited part gets score null; a person whose mask and parts are unchanged is
the job's person, bit for bit.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from m2fp_batch.annotate import rle
from m2fp_batch.annotate.parts import mask_bbox
from m2fp_batch.errors import UserError
from m2fp_batch.labels import LabelSource, class_name, decode_mask, semantic_map
from m2fp_batch.labels.layout import EXPORT_FILE
from m2fp_batch.review import masks as mk
from m2fp_batch.schema import SKIN_GROUPS

__all__ = [
    "add_pull_arguments",
    "ADDED_PERSON_SCORE",
    "REVIEW_COLUMNS",
    "REVIEW_FIELDS",
    "REVIEW_STATUSES",
    "STATUS_NOT_IN_DATASET",
    "STATUS_REJECTED",
    "STATUS_REVIEWED",
    "STATUS_UNREVIEWED",
    "UNKNOWN_SKIN_TONE",
    "UNANNOTATED",
    "ReviewRowError",
    "ReviewedStats",
    "build_person",
    "check_destination",
    "review_source",
    "patched_semantic",
    "person_mask",
    "refresh_summary",
    "signature",
    "write_reviewed",
]

STATUS_REVIEWED = "reviewed"
STATUS_REJECTED = "rejected"
STATUS_UNREVIEWED = "unreviewed"
STATUS_NOT_IN_DATASET = "not_in_dataset"
REVIEW_STATUSES = (STATUS_REVIEWED, STATUS_REJECTED, STATUS_UNREVIEWED, STATUS_NOT_IN_DATASET)
REVIEW_FIELDS = [
    pa.field(
        "review_status",
        pa.string(),
        nullable=False,
        metadata={"doc": "reviewed, rejected, unreviewed or not_in_dataset"},
    ),
    pa.field("review_edited", pa.bool_(), nullable=False, metadata={"doc": "labels differ from the job's"}),
    pa.field("review_by", pa.string(), metadata={"doc": "who gave the verdict (null when unknown)"}),
    pa.field("review_time", pa.string(), metadata={"doc": "when the verdict was given, ISO 8601 (null when unknown)"}),
]
REVIEW_COLUMNS = tuple(f.name for f in REVIEW_FIELDS)
ADDED_PERSON_SCORE = 1.0
UNANNOTATED = ("keep", "drop")  # rows without a verdict: kept with the job's labels, or left out


def add_pull_arguments(parser: Any, unannotated_help: str) -> None:
    """What every review tool's ``pull`` writes: ``--out`` (the reviewed dir), ``--unannotated``
    (the rule for rows without a verdict) and ``--rows-per-file``."""
    parser.add_argument("--out", required=True, metavar="DIR", help="the reviewed dir (outside the job output)")
    parser.add_argument("--unannotated", choices=UNANNOTATED, default="keep", help=unannotated_help)
    parser.add_argument("--rows-per-file", type=int, default=5000, help="rows per Parquet file (default 5000)")


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


@dataclass
class ReviewedStats:
    """What a write of the reviewed layout holds."""

    rows: int = 0
    by_status: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    edited: int = 0
    files: list[str] = field(default_factory=list)

    errors: list[dict] = field(default_factory=list)  # {image_id, error}: rows whose review could not be read
    dropped: int = 0  # rows left out (--unannotated drop)

    def count(self, row: Mapping[str, Any]) -> None:
        self.rows += 1
        self.by_status[row["review_status"]] += 1
        self.edited += bool(row["review_edited"])

    def to_dict(self) -> dict:
        return {"rows": self.rows, "by_status": dict(self.by_status), "edited": self.edited, "files": self.files}


class ReviewRowError(ValueError):
    """One row's review cannot be read (an unknown label, a mask of another size): the row keeps the
    job's labels as ``unreviewed`` and the error is listed."""


def check_destination(dest: Path, source: LabelSource) -> None:
    """Refuse an ``--out`` inside the job output (it would be read as part of it).

    Raises:
        UserError: it is.
    """
    if "://" in source.uri:
        return
    src = Path(source.root).resolve()
    if dest == src or src in dest.parents:
        raise UserError(f"--out {dest} is inside the job output {src}: choose a directory outside it")


def review_source(
    source: LabelSource,
    dest: str | Path,
    review_row: Callable[[dict], dict],
    summary: Mapping[str, Any],
    *,
    unannotated: str = "keep",
    rows_per_file: int = 5000,
) -> ReviewedStats:
    """Write the reviewed layout of every row of ``source``: ``review_row(job row)`` gives each output row.

    A :class:`ReviewRowError` keeps the job's row as ``unreviewed`` and lists the error; with
    ``unannotated="drop"`` only ``reviewed`` and ``rejected`` rows are written.
    """
    errors: list[dict] = []
    dropped = 0

    def files() -> Iterator[tuple[str, pa.Schema, list[dict]]]:
        nonlocal dropped
        for path in source.files:
            rows = []
            for row in source.read_file(path).to_pylist():
                try:
                    rows.append(review_row(row))
                except ReviewRowError as e:
                    errors.append({"image_id": row["image_id"], "error": str(e)})
                    rows.append({**row, "review_status": STATUS_UNREVIEWED, "review_edited": False})
            kept = [
                r for r in rows if unannotated == "keep" or r["review_status"] in (STATUS_REVIEWED, STATUS_REJECTED)
            ]
            dropped += len(rows) - len(kept)
            yield path, source.schema(path), kept

    stats = write_reviewed(dest, files(), {**summary, "unannotated": unannotated}, rows_per_file)
    stats.errors, stats.dropped = errors, dropped
    return stats


def _part_entry(label_id: int, m: np.ndarray, person_area: int, prev: Mapping | None) -> dict:
    enc = rle.encode(m)
    same = prev is not None and prev["mask"]["counts"] == enc["counts"]
    area = int(m.sum())
    return {
        "label_id": label_id,
        "label": class_name(label_id),
        "area": area,
        "fraction": float(area / person_area) if person_area else 0.0,
        "bbox": list(mask_bbox(m)),
        "score": prev["score"] if same else None,
        "mask": dict(prev["mask"]) if same else enc,
    }


def build_person(
    old: Mapping | None,
    full: np.ndarray,
    parts: Mapping[int, np.ndarray],
    *,
    person_id: int,
    score: float | None,
    schema_version: int,
) -> dict:
    """A ``persons`` entry from a person's mask and its part masks (label id -> bool mask).

    ``old`` is the job's person this one was made from (None: a reviewer added it; it gets score
    :data:`ADDED_PERSON_SCORE` and, from schema v2, an unknown skin tone). Unchanged pixels keep
    the job's encoding and scores; a fully unchanged person is the job's entry itself.
    """
    full = np.asarray(full, dtype=bool)
    kept = {int(k): np.asarray(m, dtype=bool) for k, m in sorted(parts.items()) if np.asarray(m).any()}
    old_parts = {int(q["label_id"]): q for q in (old or {}).get("parts") or []}
    if old is not None and _same_mask(old["mask"], full) and kept.keys() == old_parts.keys():
        if all(_same_mask(old_parts[k]["mask"], m) for k, m in kept.items()):
            return {**old, "person_id": person_id}
    area = int(full.sum())
    person = dict(old) if old is not None else {}
    if old is None and schema_version >= 2:
        person["skin_tone"] = dict(UNKNOWN_SKIN_TONE)
    x0, y0 = (0, 0) if mask_bbox(full) is None else mask_bbox(full)[:2]
    person.update(
        person_id=person_id,
        score=float(score) if score is not None else float(old["score"]) if old else ADDED_PERSON_SCORE,
        bbox=list(mask_bbox(full) or (x0, y0, x0, y0)),
        area=area,
        mask=dict(old["mask"]) if old is not None and _same_mask(old["mask"], full) else rle.encode(full),
        parts=[_part_entry(k, m, area, old_parts.get(k)) for k, m in kept.items()],
    )
    return person


def person_mask(base: np.ndarray, old_parts: Iterable[np.ndarray], new_parts: Iterable[np.ndarray]) -> np.ndarray:
    """A person's mask after its parts changed: ``base`` less the pixels its parts lost, plus those they gained.

    Unchanged parts leave ``base`` exactly as it is (a job's parts need not lie inside its person).
    """
    base = np.asarray(base, dtype=bool)
    old, new = np.zeros(base.shape, bool), np.zeros(base.shape, bool)
    for m in old_parts:
        old |= m
    for m in new_parts:
        new |= m
    return (base & ~(old & ~new)) | (new & ~old)


def _same_mask(enc: Mapping, m: np.ndarray) -> bool:
    return tuple(int(v) for v in enc["size"]) == m.shape and enc["counts"] == rle.encode(m)["counts"]


def _part_keys(persons: Iterable[Mapping]) -> set[tuple[int, str]]:
    return {(int(q["label_id"]), q["mask"]["counts"]) for p in persons for q in p.get("parts") or []}


def patched_semantic(original: Mapping, persons: list[dict]) -> list[dict] | None:
    """The ``semantic`` column after the people's parts changed from ``original``'s to ``persons``'.

    The job's image-level map is kept and patched: pixels of a part that was removed or edited lose
    that class (where the map had it), pixels of a new or edited part get its class (in person
    order, a later person on top). Unchanged parts leave the job's map exactly as it was.
    """
    before, after = _part_keys(original.get("persons") or []), _part_keys(persons)
    if before == after:
        return original.get("semantic")
    sem = semantic_map(original)
    for p in original.get("persons") or []:
        for q in p.get("parts") or []:
            if (int(q["label_id"]), q["mask"]["counts"]) not in after:
                sem[decode_mask(q["mask"]) & (sem == int(q["label_id"]))] = 0
    for p in persons:
        for q in p.get("parts") or []:
            if (int(q["label_id"]), q["mask"]["counts"]) not in before:
                sem[decode_mask(q["mask"])] = int(q["label_id"])
    return mk.semantic_entries(sem)


def refresh_summary(row: dict) -> None:
    """``num_persons`` and (schema v2+) the skin-tone summary of a row, from its persons."""
    row["num_persons"] = len(row["persons"])
    if int(row["schema_version"]) >= 2:
        groups = [(p.get("skin_tone") or {}).get("group") or "unknown" for p in row["persons"]]
        row["skin_tone_counts"] = {g: groups.count(g) for g in SKIN_GROUPS}
        row["skin_tone_groups"] = sorted({g for g in groups if g != "unknown"})


def signature(row: Mapping) -> tuple:
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


def output_schema(source: pa.Schema) -> pa.Schema:
    """The job file's schema (without review columns of an earlier review) plus :data:`REVIEW_FIELDS`."""
    kept = [f for f in source if f.name not in REVIEW_COLUMNS]
    return pa.schema(kept + REVIEW_FIELDS, metadata=source.metadata)


def _stem(name: str, used: set[str]) -> str:
    stem = Path(name.rsplit("/", 1)[-1]).stem
    while stem in used:
        stem += "_"
    used.add(stem)
    return stem


def write_reviewed(
    out: str | Path,
    sources: Iterable[tuple[str, pa.Schema, list[dict]]],
    summary: Mapping[str, Any],
    rows_per_file: int = 5000,
) -> ReviewedStats:
    """Write the reviewed layout into ``out``: per (source file, its schema, reviewed rows), then ``_export.json``.

    Rows lacking ``review_by`` / ``review_time`` get null. Files of an earlier write that this one
    does not rewrite are removed, so writing the same rows twice leaves the same directory.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stats, used = ReviewedStats(), set()
    for name, source_schema, rows in sources:
        schema, stem = output_schema(source_schema), _stem(name, used)
        for row in rows:
            row.setdefault("review_by", None)
            row.setdefault("review_time", None)
            stats.count(row)
        for k in range(0, max(len(rows), 1), rows_per_file):
            target = out / (
                f"{stem}.parquet" if len(rows) <= rows_per_file else f"{stem}-{k // rows_per_file:03d}.parquet"
            )
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            pq.write_table(pa.Table.from_pylist(rows[k : k + rows_per_file], schema=schema), tmp)
            os.replace(tmp, target)
            stats.files.append(target.name)
    _remove_stale(out, set(stats.files))
    body = {**summary, **stats.to_dict()}
    (out / EXPORT_FILE).write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    return stats


def _remove_stale(out: Path, keep: set[str]) -> None:
    try:
        listed = json.loads((out / EXPORT_FILE).read_text()).get("files") or []
    except (OSError, ValueError, AttributeError):
        return
    for name in listed:
        base = str(name).replace("\\", "/").rsplit("/", 1)[-1]
        if base not in keep and base.endswith(".parquet"):
            (out / base).unlink(missing_ok=True)
