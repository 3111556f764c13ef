"""The output directory: shards committed atomically, one stats file per shard, resume state.

Layout (``DIR`` local or ``s3://``)::

    DIR/shard-00000.parquet        rows of shard 0 (explicit schema)
    DIR/_stats/shard-00000.json    written after the shard's Parquet: the commit marker
    DIR/_inputs.parquet            the listing (image_id, uri, shard, passthrough) of the first run
    DIR/_config.json               the settings that shaped the rows, checked on resume
    DIR/_run.json                  summary of the last run

A shard is finished when its Parquet file and its stats file both exist. Files are written
under a hidden temporary name and renamed into place, so a kill never leaves a file that looks
finished; Parquet readers skip names starting with ``_`` or ``.``.
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


class OutputDir:
    """Atomic writes and resume bookkeeping on a pyarrow filesystem."""

    def __init__(self, uri: str, filesystems: Filesystems) -> None:
        self.uri = uri
        self.fs, self.root = filesystems.resolve(uri)

    def path(self, name: str) -> str:
        return self.root.rstrip("/") + "/" + name

    def ensure(self) -> None:
        self.fs.create_dir(self.root, recursive=True)
        self.fs.create_dir(self.path("_stats"), recursive=True)

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

    def finished_shards(self) -> set[int]:
        """Shards whose Parquet file and stats file both exist."""
        parquet = {int(m.group(1)) for i in self._listdir() if (m := SHARD_RE.match(i.base_name))}
        stats = {int(m.group(1)) for i in self._listdir("_stats") if (m := STATS_RE.match(i.base_name))}
        return parquet & stats

    def all_stats(self) -> list[dict]:
        out = []
        for i in self._listdir("_stats"):
            if STATS_RE.match(i.base_name):
                out.append(self.read_json("_stats/" + i.base_name))
        return sorted(out, key=lambda s: s["shard"])

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
