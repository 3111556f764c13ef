"""The output directory: shards committed atomically, one stats file per shard, resume state.

Layout (``DIR`` local or ``s3://``)::

    DIR/shard-00000.parquet        rows of shard 0 (explicit schema)
    DIR/_stats/shard-00000.json    written after the shard's Parquet: the commit marker
    DIR/_inputs.parquet            the listing (image_id, uri, shard, passthrough) of the first run
    DIR/_config.json               the settings that shaped the rows, checked on resume
    DIR/_run.json                  summary of the last run

A shard is finished only when its stats file is this job's commit marker for its Parquet file
(:func:`shard_committed`: the stats name the job id recorded in ``_config.json``, the shard's
row count and the Parquet file's exact size). A ``shard-*.parquet`` of another job, one copied
in by hand, or one whose stats are lost or stale is never taken as done: the shard is labelled
again and the file replaced. Files are written under a hidden temporary name and renamed into
place, so a kill never leaves a file that looks finished; Parquet readers skip names starting
with ``_`` or ``.``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from m2fp_batch.pipeline.storage import Filesystems

log = logging.getLogger(__name__)

SHARD_RE = re.compile(r"^shard-(\d{5,})\.parquet$")
STATS_RE = re.compile(r"^shard-(\d{5,})\.json$")


def shard_name(shard: int) -> str:
    return f"shard-{shard:05d}.parquet"


def stats_name(shard: int) -> str:
    return f"_stats/shard-{shard:05d}.json"


class OutputError(ValueError):
    """The output location cannot be used, or holds another job's files; the message says why."""


# Fields of a shard's stats file that make it the shard's commit marker.
MARKER_FIELDS = ("job_id", "rows", "bytes")


def shard_committed(stats: dict[str, Any], parquet_size: int | None, job_id: str, rows: int) -> bool:
    """Whether ``stats`` (a shard's stats JSON) commits a Parquet file of ``parquet_size`` bytes.

    True only when the stats were written by this job (``job_id``), for the number of inputs
    the listing gives the shard (``rows``), after a Parquet file of exactly this size.
    """
    return (
        parquet_size is not None
        and stats.get("job_id") == job_id
        and stats.get("rows") == rows
        and stats.get("bytes") == parquet_size
    )


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
        if not stats_only and self.exists("_inputs.parquet"):
            names.append("_inputs.parquet")
        names += ["_stats/" + i.base_name for i in self._listdir("_stats") if STATS_RE.match(i.base_name)]
        return sorted(names)

    def ensure(self) -> None:
        try:
            self.fs.create_dir(self.root, recursive=True)
            self.fs.create_dir(self.path("_stats"), recursive=True)
        except OSError as e:
            raise OutputError(f"cannot create the output directory {self.uri!r}: {e}") from e

    def exists(self, name: str) -> bool:
        return self.fs.get_file_info(self.path(name)).type == pafs.FileType.File

    def _listdir(self, sub: str = "") -> list[pafs.FileInfo]:
        base = self.path(sub) if sub else self.root
        if self.fs.get_file_info(base).type != pafs.FileType.Directory:
            return []
        return self.fs.get_file_info(pafs.FileSelector(base, recursive=False))

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

    def read_table(self, name: str) -> pa.Table:
        return pq.read_table(self.path(name), filesystem=self.fs)

    def shard_files(self) -> dict[int, int | None]:
        """shard -> size in bytes of every ``shard-*.parquet`` file here."""
        return {int(m.group(1)): i.size for i in self._listdir() if (m := SHARD_RE.match(i.base_name))}

    def _read_stats(self, base_name: str) -> dict | None:
        try:
            stats = self.read_json("_stats/" + base_name)
        except (OSError, ValueError):  # unreadable or half-written JSON: not a marker
            return None
        return stats if isinstance(stats, dict) else None

    def committed_stats(self, job_id: str, rows_per_shard: dict[int, int]) -> dict[int, dict]:
        """shard -> stats, for the shards of the listing committed by job ``job_id``."""
        sizes = self.shard_files()
        out = {}
        for i in self._listdir("_stats"):
            m = STATS_RE.match(i.base_name)
            if not m or int(m.group(1)) not in rows_per_shard:
                continue
            shard = int(m.group(1))
            stats = self._read_stats(i.base_name)
            if stats is not None and shard_committed(stats, sizes.get(shard), job_id, rows_per_shard[shard]):
                out[shard] = stats
        return out

    def remove_temporaries(self) -> int:
        n = 0
        for sub in ("", "_stats"):
            for i in self._listdir(sub):
                if i.base_name.startswith(".") and i.base_name.endswith(".tmp"):
                    self.fs.delete_file(i.path)
                    n += 1
        return n

    def clear(self) -> int:
        """Delete what this job writes (and nothing else) for ``--overwrite``."""
        n = self.remove_temporaries()
        for i in self._listdir():
            if SHARD_RE.match(i.base_name) or i.base_name in ("_inputs.parquet", "_config.json", "_run.json"):
                self.fs.delete_file(i.path)
                n += 1
        for i in self._listdir("_stats"):
            if STATS_RE.match(i.base_name):
                self.fs.delete_file(i.path)
                n += 1
        return n


def is_local(out: OutputDir) -> bool:
    return isinstance(out.fs, pafs.LocalFileSystem) and os.path.isabs(out.root)
