"""The output directory's layout contract: file names and which shards count as committed.

A job output (``DIR`` local or ``s3://``)::

    DIR/shard-00000.parquet        rows of shard 0 (explicit schema)
    DIR/_stats/shard-00000.json    written after the shard's Parquet: the commit marker
    DIR/_inputs.parquet            the listing (image_id, uri, shard, passthrough) of the first run
    DIR/_config.json               the settings that shaped the rows, checked on resume
    DIR/_run.json                  summary of the last run

Files are written under a hidden temporary name (``.NAME.<hex>.tmp``) and renamed into place, so
a kill never leaves a file that looks finished; Parquet readers skip names starting with ``_``
or ``.``. A shard is committed when :func:`shard_committed` says so: the job (resume) and every
reader (review, report, data, export) use that one rule.

An ``export-reviewed`` directory holds ``<source stem>[-NNN].parquet`` files and ``_export.json``
(written last), whose ``files`` list names them.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pyarrow.fs as pafs

__all__ = [
    "CONFIG_FILE",
    "EXPORT_FILE",
    "INPUTS_FILE",
    "RUN_FILE",
    "SHARD_RE",
    "STATS_DIR",
    "STATS_RE",
    "MARKER_FIELDS",
    "committed_shards",
    "export_files",
    "is_temporary",
    "list_dir",
    "output_job_id",
    "read_json_or_none",
    "safe_name",
    "shard_committed",
    "shard_name",
    "stats_name",
]

SHARD_RE = re.compile(r"^shard-(\d{5,})\.parquet$")
STATS_RE = re.compile(r"^shard-(\d{5,})\.json$")
STATS_DIR = "_stats"
INPUTS_FILE = "_inputs.parquet"
CONFIG_FILE = "_config.json"
RUN_FILE = "_run.json"
EXPORT_FILE = "_export.json"
# Fields of a shard's stats file that make it the shard's commit marker (see shard_committed).
MARKER_FIELDS = ("job_id", "rows", "bytes")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def shard_name(shard: int) -> str:
    """``shard-NNNNN.parquet``: the file of shard ``shard``, relative to the output dir."""
    return f"shard-{shard:05d}.parquet"


def stats_name(shard: int) -> str:
    """``_stats/shard-NNNNN.json``: the commit marker of shard ``shard``, relative to the output dir."""
    return f"{STATS_DIR}/shard-{shard:05d}.json"


def safe_name(image_id: str) -> str:
    """A file-system safe file name for an image id: the id itself when it is safe, else a hash of it."""
    if _SAFE_NAME.match(image_id) and image_id not in (".", ".."):
        return image_id
    return "id-" + hashlib.sha1(image_id.encode("utf-8")).hexdigest()[:20]


def is_temporary(name: str) -> bool:
    """A file being written (hidden temporary name), never a result."""
    return name.startswith(".") and name.endswith(".tmp")


def list_dir(fs: pafs.FileSystem, path: str) -> list[pafs.FileInfo]:
    """The entries of directory ``path`` (not recursive); empty when it is not a directory."""
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return []
    return fs.get_file_info(pafs.FileSelector(path, recursive=False))


def read_json_or_none(fs: pafs.FileSystem, path: str) -> Any:
    """The JSON at ``path``; None when it is missing, unreadable or half-written."""
    try:
        with fs.open_input_stream(path) as f:
            return json.loads(f.read().decode())
    except (OSError, ValueError):
        return None


def shard_committed(stats: Any, parquet_size: int | None, job_id: str | None, rows: int | None = None) -> bool:
    """Whether ``stats`` (a shard's stats JSON) commits a Parquet file of ``parquet_size`` bytes (THE commit rule).

    True only when the stats (:data:`MARKER_FIELDS`) were written by job ``job_id`` (the id in
    ``_config.json``) after a Parquet file of exactly this size, and, when the caller knows how
    many inputs the listing gives the shard (``rows``, the job on resume), for that many inputs (a
    video's frames are its rows; stats before videos count rows, one per input). A
    foreign, hand-copied or half-written ``shard-*.parquet`` never counts.
    """
    return (
        isinstance(stats, dict)
        and parquet_size is not None
        and job_id is not None
        and stats.get("job_id") == job_id
        and stats.get("bytes") == parquet_size
        and (rows is None or stats.get("inputs", stats.get("rows")) == rows)
    )


def output_job_id(fs: pafs.FileSystem, root: str) -> str | None:
    """The job id recorded in ``root/_config.json``; None when there is none."""
    saved = read_json_or_none(fs, f"{root.rstrip('/')}/{CONFIG_FILE}")
    return saved.get("job_id") if isinstance(saved, dict) else None


def committed_shards(fs: pafs.FileSystem, root: str) -> dict[int, str]:
    """Shard number -> path of its Parquet file, for every committed shard under ``root``."""
    root = root.rstrip("/")
    job_id = output_job_id(fs, root)
    parquet = {int(m.group(1)): i for i in list_dir(fs, root) if (m := SHARD_RE.match(i.base_name))}
    stats = {int(m.group(1)): i for i in list_dir(fs, f"{root}/{STATS_DIR}") if (m := STATS_RE.match(i.base_name))}
    return {
        s: info.path
        for s, info in sorted(parquet.items())
        if s in stats and shard_committed(read_json_or_none(fs, stats[s].path), info.size, job_id)
    }


def export_files(fs: pafs.FileSystem, root: str) -> list[str] | None:
    """The Parquet files an ``export-reviewed`` dir lists in ``_export.json``; None when there is none.

    Raises:
        ValueError: ``_export.json`` is not the export's summary, or a file it lists is missing.
    """
    root = root.rstrip("/")
    path = f"{root}/{EXPORT_FILE}"
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        try:
            listed = json.loads(f.read().decode())["files"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path} is not the summary `m2fp-batch export-reviewed` writes: {e}") from e
    files = [f"{root}/{str(name).replace(chr(92), '/').rsplit('/', 1)[-1]}" for name in listed]
    missing = [p for p in files if fs.get_file_info(p).type != pafs.FileType.File]
    if missing:
        raise ValueError(f"{path} lists {len(missing)} file(s) that are missing, e.g. {missing[0]}")
    return files
