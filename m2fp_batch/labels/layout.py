"""The output directory's layout contract: file names and which shards count as committed.

A job output (``DIR`` local or ``s3://``)::

    DIR/shard-00000.parquet        rows of shard 0 (explicit schema)
    DIR/_stats/shard-00000.json    written after the shard's Parquet: the commit marker
    DIR/_inputs.parquet            the listing (image_id, uri, shard, passthrough) of the first run
    DIR/_config.json               the settings that shaped the rows, checked on resume
    DIR/_run.json                  summary of the last run

Files are written under a hidden temporary name (``.NAME.<hex>.tmp``) and renamed into place, so
a kill never leaves a file that looks finished; Parquet readers skip names starting with ``_``
or ``.``. A shard is committed when :func:`is_committed` says so: the job (resume) and every
reader (review, report, data, export) use that one rule.

An ``export-reviewed`` directory holds ``<source stem>[-NNN].parquet`` files and ``_export.json``
(written last), whose ``files`` list names them.
"""

from __future__ import annotations

import hashlib
import json
import re

import pyarrow.fs as pafs

__all__ = [
    "CONFIG_FILE",
    "EXPORT_FILE",
    "INPUTS_FILE",
    "RUN_FILE",
    "SHARD_RE",
    "STATS_DIR",
    "STATS_RE",
    "committed_shards",
    "export_files",
    "is_committed",
    "is_temporary",
    "list_dir",
    "safe_name",
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


def is_committed(
    fs: pafs.FileSystem, root: str, shard: int, parquet: pafs.FileInfo, stats: pafs.FileInfo | None
) -> bool:
    """Whether shard ``shard`` of the output at ``root`` is finished (THE commit rule).

    ``parquet`` is the listing entry of ``shard-NNNNN.parquet``, ``stats`` that of
    ``_stats/shard-NNNNN.json`` (None when absent). The job writes the stats file after the
    Parquet file, so a shard with both is complete.
    """
    del fs, root, shard  # the rule only needs the listing today
    return parquet.type == pafs.FileType.File and stats is not None and stats.type == pafs.FileType.File


def committed_shards(fs: pafs.FileSystem, root: str) -> dict[int, str]:
    """Shard number -> path of its Parquet file, for every committed shard under ``root``."""
    root = root.rstrip("/")
    parquet = {int(m.group(1)): i for i in list_dir(fs, root) if (m := SHARD_RE.match(i.base_name))}
    stats = {int(m.group(1)): i for i in list_dir(fs, f"{root}/{STATS_DIR}") if (m := STATS_RE.match(i.base_name))}
    return {s: info.path for s, info in sorted(parquet.items()) if is_committed(fs, root, s, info, stats.get(s))}


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
