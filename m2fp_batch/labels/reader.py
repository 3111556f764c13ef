"""Find and read the Parquet files of a job output, an ``export-reviewed`` dir or a copy of shards.

``open_labels(uri)`` (local path or ``s3://``; S3 settings from the ``AWS_*`` variables) returns a
:class:`LabelSource` whose ``files`` are, in order:

* a job output (it has ``_stats/``): the committed shards only (``layout.committed_shards``), never
  a temporary, a foreign ``shard-*.parquet`` without its marker or ``_inputs.parquet``;
* an ``export-reviewed`` dir (it has ``_export.json``): the files that summary lists;
* a directory of shards copied without ``_stats/``: its ``shard-NNNNN.parquet`` files.

Rows are read lazily, one file at a time (``iter_tables``, ``iter_rows``) or per file with a column
selection (``read_file``); :mod:`m2fp_batch.labels.maps` turns a row into arrays.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from m2fp_batch.errors import UserError
from m2fp_batch.labels.layout import CONFIG_FILE, SHARD_RE, STATS_DIR, committed_shards, export_files, list_dir
from m2fp_batch.schema import REJECTED, REVIEW_STATUS, STATUS_OK
from m2fp_batch.storage import Filesystems, to_uri

__all__ = [
    "KIND_JOB",
    "KIND_REVIEWED",
    "KIND_SHARDS",
    "SUPPORTED_SCHEMA_VERSIONS",
    "LabelSource",
    "LabelsError",
    "check_version",
    "is_trainable",
    "open_labels",
]

SUPPORTED_SCHEMA_VERSIONS = (1, 2, 3, 4, 5)
KIND_JOB = "job"
KIND_REVIEWED = "export-reviewed"
KIND_SHARDS = "shards"
# Columns every job output file has: they tell a Parquet file of ours from any other.
OUTPUT_MARK_COLUMNS = ("schema_version", "image_id")

log = logging.getLogger(__name__)


class LabelsError(UserError, ValueError):
    """The labels cannot be read (missing dir, no shards, foreign file); the message says what to do."""


class LabelSource:
    """The Parquet files of one job output / ``export-reviewed`` dir, local or ``s3://``."""

    def __init__(self, uri: str | Path, filesystems: Filesystems | None = None) -> None:
        self.uri = str(uri)
        try:
            self.fs, self.root = (filesystems or Filesystems()).resolve(self.uri)
            info = self.fs.get_file_info(self.root)
        except (OSError, ValueError) as e:
            raise LabelsError(f"{self.uri}: cannot be read: {e}") from e
        if info.type != pafs.FileType.Directory:
            raise LabelsError(
                f"{self.uri} does not exist or is not a directory: give the --out of `m2fp-batch run` "
                "or an `export-reviewed` directory"
            )
        self.kind, self.files = self._find_files()

    def _find_files(self) -> tuple[str, tuple[str, ...]]:
        try:
            reviewed = export_files(self.fs, self.root)
        except ValueError as e:
            raise LabelsError(str(e)) from e
        if reviewed is not None:
            return KIND_REVIEWED, tuple(reviewed)
        shards = sorted(i.path for i in list_dir(self.fs, self.root) if SHARD_RE.match(i.base_name))
        if self.fs.get_file_info(f"{self.root}/{STATS_DIR}").type == pafs.FileType.Directory:
            kind, files = KIND_JOB, list(committed_shards(self.fs, self.root).values())
            skipped = sorted(set(shards) - set(files))
            if skipped:
                log.warning(
                    "%s: %d shard file(s) not committed by this output's job (no matching %s/ marker: being "
                    "written, truncated, replaced or another job's) are not read, e.g. %s; rerun the job to "
                    "relabel them",
                    self.uri,
                    len(skipped),
                    STATS_DIR,
                    skipped[0].rsplit("/", 1)[-1],
                )
        else:
            kind, files = KIND_SHARDS, shards
        if not files:
            raise LabelsError(
                f"{self.uri} has no shard-NNNNN.parquet files of a job output (committed ones, with their "
                f"{STATS_DIR}/ marker) and no .parquet files of an export-reviewed dir: is it the --output "
                "of `m2fp-batch run`?"
            )
        return kind, tuple(files)

    def __repr__(self) -> str:
        return f"LabelSource({self.uri!r}, kind={self.kind!r}, files={len(self.files)})"

    def file_uri(self, path: str) -> str:
        """A file of :attr:`files` as a uri (``s3://`` prefix restored)."""
        return to_uri(self.fs, path)

    def schema(self, path: str | None = None) -> pa.Schema:
        """The Arrow schema of one file (default: the first)."""
        return pq.read_schema(path or self.files[0], filesystem=self.fs)

    def read_file(self, path: str, columns: Sequence[str] | None = None) -> pa.Table:
        """The rows of one file (``columns`` that the file lacks are left out).

        Raises:
            LabelsError: the file is not a job output file (no ``schema_version`` / ``image_id``).
        """
        try:
            names = self.schema(path).names
        except (OSError, pa.ArrowException) as e:
            raise LabelsError(f"{self.file_uri(path)} is not a readable Parquet file: {e}") from e
        if any(c not in names for c in OUTPUT_MARK_COLUMNS):
            raise LabelsError(f"{self.file_uri(path)} is not a job output file (no schema_version / image_id column)")
        cols = None if columns is None else [c for c in columns if c in names]
        return pq.read_table(path, columns=cols, filesystem=self.fs)

    def iter_tables(self, columns: Sequence[str] | None = None) -> Iterator[tuple[str, pa.Table]]:
        """(file, its rows) for every file, one file in memory at a time."""
        for path in self.files:
            yield path, self.read_file(path, columns)

    def read_table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """All rows of every file in one table (passthrough columns that differ are promoted)."""
        tables = [t for _, t in self.iter_tables(columns)]
        return pa.concat_tables(tables, promote_options="permissive")

    def iter_rows(
        self, columns: Sequence[str] | None = None, batch_size: int = 256
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(file, row dict) for every row, checking each row's schema version.

        Raises:
            LabelsError: a file is not a job output file, or a row has a schema version this
                code does not know.
        """
        for path in self.files:
            table = self.read_file(path, columns)
            for batch in table.to_batches(max_chunksize=batch_size):
                for row in batch.to_pylist():
                    check_version(row, self.file_uri(path))
                    yield path, row

    def read_json(self, name: str) -> Any | None:
        """A JSON file of the dir (e.g. ``_config.json``); None when it is not there.

        Raises:
            LabelsError: the file is not JSON.
        """
        path = f"{self.root.rstrip('/')}/{name}"
        if self.fs.get_file_info(path).type != pafs.FileType.File:
            return None
        try:
            with self.fs.open_input_stream(path) as f:
                return json.loads(f.read().decode())
        except (OSError, ValueError) as e:
            raise LabelsError(f"{self.file_uri(path)} is not a JSON file: {e}") from e

    def job_settings(self) -> dict[str, Any] | None:
        """The job's settings from ``_config.json``; None when not recorded."""
        saved = self.read_json(CONFIG_FILE)
        if saved is None:
            return None
        if not isinstance(saved, dict) or not isinstance(saved.get("settings", {}), dict):
            raise LabelsError(f"{self.uri}/{CONFIG_FILE} is not the job's settings file")
        return saved.get("settings", {})


def check_version(row: dict[str, Any], where: str) -> None:
    """Raise :class:`LabelsError` when the row's schema version is not one this code reads."""
    v = row.get("schema_version")
    if v not in SUPPORTED_SCHEMA_VERSIONS:
        raise LabelsError(
            f"{where}: row {row.get('image_id')!r} has schema_version {v}; this m2fp-batch reads "
            f"{SUPPORTED_SCHEMA_VERSIONS}: upgrade m2fp-batch"
        )


def is_trainable(row: dict[str, Any]) -> bool:
    """An ``ok`` row whose labels no reviewer rejected."""
    return row.get("status") == STATUS_OK and row.get(REVIEW_STATUS) != REJECTED


def open_labels(uri: str | Path, filesystems: Filesystems | None = None) -> LabelSource:
    """The labels at ``uri`` (see the module docstring).

    Raises:
        LabelsError: not a directory, or no job output / export-reviewed files there.
    """
    return LabelSource(uri, filesystems)
