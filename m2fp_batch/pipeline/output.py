"""The output directory: shards committed atomically, one stats file per shard, resume state.

The layout (file names and THE commit rule, :func:`m2fp_batch.labels.layout.shard_committed`)
is defined in :mod:`m2fp_batch.labels.layout`, shared with every reader of the output. A shard is
finished only when its stats file is this job's commit marker for its Parquet file (the stats name
the job id recorded in ``_config.json``, the shard's row count and the Parquet file's exact size).
A ``shard-*.parquet`` of another job, one copied in by hand, or one whose stats are lost or stale
is never taken as done: the shard is labelled again and the file replaced.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from m2fp_batch.errors import UserError
from m2fp_batch.labels.layout import (
    CONFIG_FILE,
    INPUTS_FILE,
    RUN_FILE,
    SHARD_RE,
    STATS_DIR,
    STATS_RE,
    is_temporary,
    list_dir,
    read_json_or_none,
    shard_committed,
)
from m2fp_batch.storage import Filesystems

__all__ = ["OutputDir", "is_local"]

log = logging.getLogger(__name__)


class OutputError(UserError, ValueError):
    """The output location cannot be used, or holds another job's files; the message says why."""


class OutputDir:
    """Atomic writes and resume bookkeeping on a pyarrow filesystem."""

    def __init__(self, uri: str, filesystems: Filesystems) -> None:
        self.uri = uri
        self.fs, self.root = filesystems.resolve(uri)

    def path(self, name: str) -> str:
        return self.root.rstrip("/") + "/" + name

    def check_usable(self) -> None:
        """Refuse an output that is a file; creates nothing."""
        info = self.fs.get_file_info(self.root)
        if info.type == pafs.FileType.File:
            raise OutputError(f"--output {self.uri!r} is a file, not a directory: pass a directory")

    def job_files(self, stats_only: bool = False) -> list[str]:
        """Names of files here that this job writes (shards, listing, stats)."""
        names = [] if stats_only else [i.base_name for i in self._listdir() if SHARD_RE.match(i.base_name)]
        if not stats_only and self.exists(INPUTS_FILE):
            names.append(INPUTS_FILE)
        names += [f"{STATS_DIR}/{i.base_name}" for i in self._listdir(STATS_DIR) if STATS_RE.match(i.base_name)]
        return sorted(names)

    def ensure(self) -> None:
        try:
            self.fs.create_dir(self.root, recursive=True)
            self.fs.create_dir(self.path(STATS_DIR), recursive=True)
        except OSError as e:
            raise OutputError(f"cannot create the output directory {self.uri!r}: {e}") from e

    def exists(self, name: str) -> bool:
        return self.fs.get_file_info(self.path(name)).type == pafs.FileType.File

    def _listdir(self, sub: str = "") -> list[pafs.FileInfo]:
        return list_dir(self.fs, self.path(sub) if sub else self.root)

    def _commit(self, name: str, write) -> int:
        """Write via ``write(tmp_path)`` then rename to ``name``; returns the size in bytes."""
        final = self.path(name)
        head, _, tail = final.rpartition("/")
        tmp = f"{head}/.{tail}.{uuid.uuid4().hex[:8]}.tmp"
        write(tmp)
        size = self.fs.get_file_info(tmp).size or 0
        self.fs.move(tmp, final)
        return int(size)

    def write_bytes(self, name: str, data: bytes) -> int:
        def w(p: str) -> None:
            with self.fs.open_output_stream(p) as f:
                f.write(data)

        return self._commit(name, w)

    def write_json(self, name: str, obj: Any) -> int:
        return self.write_bytes(name, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())

    def read_json(self, name: str) -> Any:
        with self.fs.open_input_stream(self.path(name)) as f:
            return json.loads(f.read().decode())

    def write_table(self, name: str, table: pa.Table, compression: str = "zstd") -> int:
        comp = None if compression == "none" else compression
        return self._commit(name, lambda p: pq.write_table(table, p, filesystem=self.fs, compression=comp))

    def write_batches(
        self, name: str, schema: pa.Schema, batches, compression: str = "zstd", row_group_rows: int | None = None
    ) -> int:
        """Write the record batches as one Parquet file, streaming (a row group each, or of at
        most ``row_group_rows``)."""
        comp = None if compression == "none" else compression

        def w(p: str) -> None:
            with pq.ParquetWriter(p, schema, filesystem=self.fs, compression=comp) as writer:
                for batch in batches:
                    writer.write_batch(batch, row_group_size=row_group_rows)

        return self._commit(name, w)

    def read_table(self, name: str) -> pa.Table:
        return pq.read_table(self.path(name), filesystem=self.fs)

    def parquet_file(self, name: str) -> pq.ParquetFile:
        """The Parquet file ``name``, opened for reading in row groups or batches."""
        return pq.ParquetFile(self.path(name), filesystem=self.fs)

    def shard_files(self) -> dict[int, int | None]:
        """shard -> size in bytes of every ``shard-*.parquet`` file here."""
        return {int(m.group(1)): i.size for i in self._listdir() if (m := SHARD_RE.match(i.base_name))}

    def committed_stats(self, job_id: str, rows_per_shard: dict[int, int]) -> Iterator[tuple[int, dict]]:
        """(shard, stats) of each shard of the listing committed by job ``job_id``, one at a time."""
        sizes = self.shard_files()
        for i in self._listdir(STATS_DIR):
            m = STATS_RE.match(i.base_name)
            if not m or int(m.group(1)) not in rows_per_shard:
                continue
            shard = int(m.group(1))
            stats = read_json_or_none(self.fs, i.path)
            if shard_committed(stats, sizes.get(shard), job_id, rows_per_shard[shard]):
                yield shard, stats

    def remove_temporaries(self) -> int:
        n = 0
        for sub in ("", STATS_DIR):
            for i in self._listdir(sub):
                if is_temporary(i.base_name):
                    self.fs.delete_file(i.path)
                    n += 1
        return n

    def clear(self) -> int:
        """Delete what this job writes (and nothing else) for ``--overwrite``."""
        n = self.remove_temporaries()
        for i in self._listdir():
            if SHARD_RE.match(i.base_name) or i.base_name in (INPUTS_FILE, CONFIG_FILE, RUN_FILE):
                self.fs.delete_file(i.path)
                n += 1
        for i in self._listdir(STATS_DIR):
            if STATS_RE.match(i.base_name):
                self.fs.delete_file(i.path)
                n += 1
        return n


def is_local(out: OutputDir) -> bool:
    return isinstance(out.fs, pafs.LocalFileSystem) and os.path.isabs(out.root)
