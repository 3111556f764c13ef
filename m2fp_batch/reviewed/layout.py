"""Write the reviewed layout: one Parquet file per source file of the job output, then ``_export.json``.

Files are ``<source stem>[-NNN].parquet`` (split at ``rows_per_file``), the job's columns,
passthrough included, plus :data:`REVIEW_FIELDS`; ``_export.json`` is written last and lists the
files (the reader in :mod:`m2fp_batch.labels` reads only those).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from m2fp_batch.errors import UserError
from m2fp_batch.labels import LabelSource
from m2fp_batch.labels.layout import EXPORT_FILE
from m2fp_batch.reviewed.rows import ReviewRowError, finish_row
from m2fp_batch.schema import REJECTED, REVIEW_STATUS, REVIEWED, UNREVIEWED

__all__ = [
    "REVIEW_COLUMNS",
    "REVIEW_FIELDS",
    "UNANNOTATED",
    "ReviewedSummary",
    "check_destination",
    "output_schema",
    "review_source",
    "write_reviewed",
]

REVIEW_FIELDS = [
    pa.field(
        REVIEW_STATUS,
        pa.string(),
        nullable=False,
        metadata={"doc": "reviewed, rejected, unreviewed or not_in_dataset"},
    ),
    pa.field("review_edited", pa.bool_(), nullable=False, metadata={"doc": "labels differ from the job's"}),
    pa.field("review_by", pa.string(), metadata={"doc": "who gave the verdict (null when unknown)"}),
    pa.field("review_time", pa.string(), metadata={"doc": "when the verdict was given, ISO 8601 (null when unknown)"}),
]
REVIEW_COLUMNS = tuple(f.name for f in REVIEW_FIELDS)
UNANNOTATED = ("keep", "drop")  # rows without a verdict: kept with the job's labels, or left out


@dataclass
class ReviewedSummary:
    """What one write of the reviewed layout read and wrote (``export-reviewed``, ``label-studio pull``,
    ``cvat pull`` print :meth:`to_dict` as JSON).

    Attributes:
        source: what was read: the job output (the pulls) or the FiftyOne dataset (export-reviewed).
        dest: the reviewed dir written.
        errors: ``{image_id, error}`` of rows whose review could not be read (kept as ``unreviewed``).
        dropped: rows left out (``--unannotated drop``).
        details: what the tool adds (Label Studio's project, the CVAT export's items, ...), printed
            beside the rest.
    """

    source: str = ""
    dest: str = ""
    rows: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    edited: int = 0
    dropped: int = 0
    files: list[str] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def count(self, row: Mapping[str, Any]) -> None:
        """Count one written row."""
        self.rows += 1
        self.by_status[row[REVIEW_STATUS]] = self.by_status.get(row[REVIEW_STATUS], 0) + 1
        self.edited += bool(row["review_edited"])

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        return {**body.pop("details"), **body}


def check_destination(dest: Path, source: LabelSource) -> None:
    """Refuse a destination inside the job output (it would be read as part of it).

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
    meta: Mapping[str, Any],
    *,
    unannotated: str = "keep",
    rows_per_file: int = 5000,
    summary: ReviewedSummary | None = None,
) -> ReviewedSummary:
    """Write the reviewed layout of every row of ``source`` into ``dest``: ``review_row(job row)`` gives each row.

    A :class:`ReviewRowError` keeps the job's row as ``unreviewed`` and lists the error; with
    ``unannotated="drop"`` only ``reviewed`` and ``rejected`` rows are written. ``meta`` goes into
    ``_export.json``; the counts go into ``summary`` (a new one when None), which is returned.
    """
    summary = summary or ReviewedSummary(source=source.uri, dest=str(dest))

    def files() -> Iterator[tuple[str, pa.Schema, list[dict]]]:
        for path in source.files:
            rows = []
            for row in source.read_file(path).to_pylist():
                try:
                    rows.append(review_row(row))
                except ReviewRowError as e:
                    summary.errors.append({"image_id": row["image_id"], "error": str(e)})
                    rows.append(finish_row(row, UNREVIEWED))
            kept = [r for r in rows if unannotated == "keep" or r[REVIEW_STATUS] in (REVIEWED, REJECTED)]
            summary.dropped += len(rows) - len(kept)
            yield path, source.schema(path), kept

    return write_reviewed(dest, files(), {**meta, "unannotated": unannotated}, rows_per_file, summary=summary)


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
    dest: str | Path,
    sources: Iterable[tuple[str, pa.Schema, list[dict]]],
    meta: Mapping[str, Any],
    rows_per_file: int = 5000,
    *,
    summary: ReviewedSummary | None = None,
) -> ReviewedSummary:
    """Write the reviewed layout into ``dest``: per (source file, its schema, reviewed rows), then ``_export.json``.

    Rows lacking ``review_by`` / ``review_time`` get null. Files of an earlier write that this one
    does not rewrite are removed, so writing the same rows twice leaves the same directory.
    ``_export.json`` holds ``meta`` and the counts; the counts also go into ``summary`` (returned).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    summary = summary or ReviewedSummary(dest=str(dest))
    used: set[str] = set()
    for name, source_schema, rows in sources:
        schema, stem = output_schema(source_schema), _stem(name, used)
        for row in rows:
            row.setdefault("review_by", None)
            row.setdefault("review_time", None)
            summary.count(row)
        for k in range(0, max(len(rows), 1), rows_per_file):
            target = dest / (
                f"{stem}.parquet" if len(rows) <= rows_per_file else f"{stem}-{k // rows_per_file:03d}.parquet"
            )
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            pq.write_table(pa.Table.from_pylist(rows[k : k + rows_per_file], schema=schema), tmp)
            os.replace(tmp, target)
            summary.files.append(target.name)
    _remove_stale(dest, set(summary.files))
    counts = {"rows": summary.rows, "by_status": summary.by_status, "edited": summary.edited, "files": summary.files}
    (dest / EXPORT_FILE).write_text(json.dumps({**meta, **counts}, indent=2, sort_keys=True) + "\n")
    return summary


def _remove_stale(dest: Path, keep: set[str]) -> None:
    try:
        listed = json.loads((dest / EXPORT_FILE).read_text()).get("files") or []
    except (OSError, ValueError, AttributeError):
        return
    for name in listed:
        base = str(name).replace("\\", "/").rsplit("/", 1)[-1]
        if base not in keep and base.endswith(".parquet"):
            (dest / base).unlink(missing_ok=True)
