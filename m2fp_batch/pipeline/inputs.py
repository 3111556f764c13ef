"""Listing the inputs: an image directory (recursive), an ``s3://`` prefix or a Parquet/CSV manifest.

The listing streams: a directory walk, S3 pages or a manifest's row groups become batches of
``image_id``, ``uri`` and the manifest's other columns (passthrough), written to a local Parquet
file as they come (:func:`stage_listing`), so the driver never holds the whole listing. A
directory or S3 prefix is listed in uri order, a manifest in its own row order; shards are
fixed-size chunks of that order. The first run saves it, with its shards, as
``DIR/_inputs.parquet``; a rerun reuses it, so every input keeps its shard, and inputs that
appeared since are appended as new shards.
"""

from __future__ import annotations

import binascii
import hashlib
import logging
import os
import posixpath
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from m2fp_batch.errors import UserError
from m2fp_batch.pipeline.reading import escape_name
from m2fp_batch.storage import Filesystems, is_s3, list_s3, normalize_uri, to_uri
from m2fp_batch.video import VIDEO_EXTENSIONS

__all__ = [
    "IMAGE_EXTENSIONS",
    "LISTED_EXTENSIONS",
    "LISTING_BATCH_ROWS",
    "LISTING_COLUMNS",
    "MANIFEST_EXTENSIONS",
    "READ_COLUMNS",
    "InputError",
    "StagedListing",
    "digests",
    "image_id_for",
    "stage_listing",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
# what a directory listing takes: photos and videos (a video's sampled frames become rows)
LISTED_EXTENSIONS = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS
MANIFEST_EXTENSIONS = (".parquet", ".pq", ".csv")
# The listing's own columns (and every output row's keys); a manifest's other columns pass through.
LISTING_COLUMNS = ("image_id", "uri", "shard")
# Columns the read stage adds to each batch (reading.read_batch): a passthrough column of that
# name would collide inside the pipeline.
READ_COLUMNS = ("data", "read_error", "read_error_kind", "read_s")
MAX_ROWS_SHOWN = 5
# Rows per batch while listing, and per row group of the staging file: what the driver holds at once.
LISTING_BATCH_ROWS = 65536
# Rows per row group of _inputs.parquet: a read task (one block of the pipeline) reads one or two
INPUTS_ROW_GROUP_ROWS = 8192
DIGEST = np.dtype("S16")
# A uri that normalize_uri could change: not an absolute local path, a "//" or "~", "." or ".."
# segments, a trailing "/".
NEEDS_RESOLVING = (
    r"^(?:[^/]|//)|/\.{1,2}(?:/|$)|//|/$"  # 16 bytes of blake2b per value: duplicates and resume without the strings
)


class InputError(UserError, ValueError):
    """The input cannot be listed (missing, empty, bad manifest); the message says why."""


def image_id_for(uri: str) -> str:
    """Stable id of an input without a manifest id: sha1 of the uri, 20 hex digits."""
    return hashlib.sha1(uri.encode("utf-8")).hexdigest()[:20]


def digests(values: pa.Array) -> np.ndarray:
    """16-byte digests of a string array (a collision needs ~2**64 values): sets of ids and uris
    held as 16 bytes per input instead of Python strings."""
    joined = b"".join(hashlib.blake2b(v, digest_size=16).digest() for v in _utf8_values(values))
    return np.frombuffer(joined, DIGEST)


@dataclass(frozen=True)
class StagedListing:
    """The input listed into a local Parquet file (image_id, uri, passthrough), in listing order."""

    path: str
    rows: int
    schema: pa.Schema

    def batches(self) -> Iterator[pa.RecordBatch]:
        yield from pq.ParquetFile(self.path).iter_batches(LISTING_BATCH_ROWS)


@dataclass(frozen=True)
class _Manifest:
    """What reading a manifest's batches needs."""

    src: str
    base: str
    uri_column: str
    image_id_column: str
    rest: list[str]
    schema: pa.Schema  # the listing's: image_id, uri, passthrough


def stage_listing(
    src: str,
    filesystems: Filesystems,
    workdir: str,
    uri_column: str = "uri",
    image_id_column: str = "image_id",
    progress_s: float = 10.0,
) -> StagedListing:
    """List ``src`` into ``workdir/listing.parquet`` batch by batch; returns what was written.

    Raises:
        InputError: ``src`` does not exist, holds no images, or the manifest is malformed
            (refused only once the whole input is read: duplicates can be anywhere).
    """
    fs, path = filesystems.resolve(src)
    try:
        info = fs.get_file_info(path)
    except OSError as e:
        raise InputError(f"input {src!r} cannot be reached: {' '.join(str(e).split())}") from e
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"input {src!r} does not exist")
    manifest = info.type == pafs.FileType.File
    if manifest and not path.lower().endswith(MANIFEST_EXTENSIONS):
        raise InputError(f"input {src!r} is a file but not a manifest (.parquet or .csv)")
    batches = (
        _manifest_batches(fs, path, src, uri_column, image_id_column)
        if manifest
        else _directory_batches(fs, path, src, filesystems)
    )
    staged = _write_staged(batches, os.path.join(workdir, "listing.parquet"), src, manifest, progress_s)
    if staged.rows == 0:
        if manifest:
            raise InputError(f"manifest {src!r} has no rows: nothing to label")
        raise InputError(
            f"input {src!r} holds no images or videos (extensions: {', '.join(LISTED_EXTENSIONS)}, any case)"
        )
    return staged


class _Rate:
    """Logs the listing's own rate every ``interval`` seconds (the progress line of a long listing)."""

    def __init__(self, src: str, interval: float) -> None:
        self.src, self.interval = src, interval
        self.t0 = self.last = time.time()
        self.logged = -1

    def log(self, rows: int, final: bool = False) -> None:
        now = time.time()
        if (final and rows != self.logged) or now - self.last >= self.interval:
            self.last, self.logged = now, rows
            rate = rows / max(now - self.t0, 1e-9)
            log.info("listing %s: %d input(s) in %.1f s (%.0f inputs/s)", self.src, rows, now - self.t0, rate)


def _write_staged(batches, path: str, src: str, manifest: bool, progress_s: float) -> StagedListing:
    """Write the batches of ``(batch, uri digests, id digests)`` to ``path``; refuse duplicates at the end."""
    writer, rows, rate = None, 0, _Rate(src, progress_s)
    uri_d: list[np.ndarray] = []
    id_d: list[np.ndarray] = []
    schema = pa.schema([("image_id", pa.string()), ("uri", pa.string())])
    try:
        for batch, uris, ids in batches:
            if writer is None:
                schema = batch.schema
                writer = pq.ParquetWriter(path, schema, compression="zstd")
            writer.write_batch(batch, row_group_size=LISTING_BATCH_ROWS)
            rows += batch.num_rows
            if manifest:  # a walk or an S3 listing names each file once: nothing to check
                uri_d.append(uris)
            if ids is not None:
                id_d.append(ids)
            rate.log(rows)
    finally:
        if writer is not None:
            writer.close()
    rate.log(rows, final=True)
    if manifest:
        _refuse_duplicates(uri_d, "file", src)
        _refuse_duplicates(id_d, "image_id", src)
    return StagedListing(path, rows, schema)


def _directory_batches(fs: pafs.FileSystem, path: str, src: str, filesystems: Filesystems):
    if isinstance(fs, pafs.LocalFileSystem):
        names = _walk_local(path, src)
    else:
        bucket, _, key = path.partition("/")
        prefix = key.rstrip("/") + "/" if key else ""
        names = (
            f"s3://{bucket}/{k}"
            for page in list_s3(filesystems.s3_options, bucket, prefix)
            for k in page
            if k.lower().endswith(LISTED_EXTENSIONS)
        )
    chunk: list[str] = []
    for uri in names:
        chunk.append(uri)
        if len(chunk) == LISTING_BATCH_ROWS:
            yield _uri_batch(chunk)
            chunk = []
    if chunk:
        yield _uri_batch(chunk)


def _utf8_values(arr: pa.Array) -> Iterator[bytes]:
    """The UTF-8 bytes of each value of a string array, straight from its buffers."""
    arr = arr.cast(pa.string())
    offsets = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset : arr.offset + len(arr) + 1].tolist()
    data = arr.buffers()[2].to_pybytes() if len(arr) else b""
    return (data[a:b] for a, b in zip(offsets[:-1], offsets[1:]))


def _uri_batch(uris: list[str] | pa.Array) -> tuple[pa.RecordBatch, np.ndarray, None]:
    """(image_id = sha1(uri)[:20 hex], uri) and the uris' digests (sha1's first 16 bytes)."""
    uris = uris if isinstance(uris, pa.Array) else pa.array(uris, pa.string())
    sha = np.frombuffer(b"".join(hashlib.sha1(u).digest() for u in _utf8_values(uris)), np.uint8).reshape(-1, 20)
    hexed = binascii.hexlify(sha[:, :10].tobytes())
    offsets = pa.py_buffer(np.arange(0, 20 * (len(uris) + 1), 20, dtype=np.int32).tobytes())
    ids = pa.StringArray.from_buffers(len(uris), offsets, pa.py_buffer(hexed))
    batch = pa.RecordBatch.from_arrays([ids, uris], names=["image_id", "uri"])
    return batch, np.ascontiguousarray(sha[:, :16]).view(DIGEST).ravel(), None


def _walk_local(root: str, src: str) -> Iterator[str]:
    """Image files under ``root`` in uri order (as ``sorted`` of the full paths); symlinked
    directories are not followed; a dangling symlink is listed (it becomes a ``missing`` row).
    A name that is not UTF-8 keeps its bytes escaped (``reading.escape_name``) and becomes a
    ``bad_name`` error row; the walk warns once at its end."""
    bad = [0, ""]
    yield from _walk_dir(root, bad)
    if bad[0]:
        log.warning(
            "input %s: %d file name(s) are not valid UTF-8, e.g. %r: each becomes an error row (bad_name); "
            "rename them to UTF-8 (e.g. convmv -f latin1 -t utf8 -r --notest DIR) and run again",
            src, bad[0], bad[1],
        )  # fmt: skip


def _walk_dir(path: str, bad: list) -> Iterator[str]:
    try:
        with os.scandir(path) as it:
            entries = [(e.name + "/" if _is_walkable_dir(e) else e.name, e) for e in it]
    except OSError:  # an unreadable directory is skipped, as os.walk does
        return
    entries.sort(key=lambda ke: ke[0])
    for key, e in entries:
        if key.endswith("/"):
            yield from _walk_dir(e.path, bad)
        elif not _is_dir(e) and e.name.lower().endswith(LISTED_EXTENSIONS):
            uri = escape_name(e.path)
            if uri is not e.path:
                bad[0] += 1
                bad[1] = bad[1] or uri
            yield uri


def _is_dir(e: os.DirEntry) -> bool:
    try:
        return e.is_dir()
    except OSError:
        return False


def _is_walkable_dir(e: os.DirEntry) -> bool:
    return _is_dir(e) and not e.is_symlink()


def _rows_text(rows: np.ndarray) -> str:
    """Manifest row numbers (``rows``: 0-based data rows) shown counting from 1, a few of them."""
    shown = ", ".join(str(int(r) + 1) for r in rows[:MAX_ROWS_SHOWN]) + (" ..." if len(rows) > MAX_ROWS_SHOWN else "")
    return f"{len(rows)} row(s) ({shown}; counting data rows from 1)"


def _refuse_duplicates(parts: list[np.ndarray], what: str, src: str) -> None:
    """Refuse values (given as digests, in row order) that appear more than once, naming their rows."""
    if not parts:
        return
    values = np.concatenate(parts)
    ordered = np.sort(values)
    dup_values = ordered[1:][ordered[1:] == ordered[:-1]]
    del ordered
    if len(dup_values):
        rows = np.flatnonzero(np.isin(values, dup_values))
        raise InputError(f"manifest {src!r}: {_rows_text(rows)} name the same {what} (each input must appear once)")


def _open_manifest(fs: pafs.FileSystem, path: str, src: str):
    """(schema, batches) of a CSV or Parquet manifest, read in blocks / row groups."""
    try:
        if path.lower().endswith(".csv"):
            reader = pacsv.open_csv(fs.open_input_stream(path))
            return reader.schema, reader
        pf = pq.ParquetFile(path, filesystem=fs)
        return pf.schema_arrow, pf.iter_batches(LISTING_BATCH_ROWS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as e:
        raise _unreadable(src, e) from e


def _unreadable(src: str, e: Exception) -> InputError:
    return InputError(f"manifest {src!r} cannot be read: {' '.join(str(e).split())[:300]}")


def _manifest_spec(schema: pa.Schema, fs: pafs.FileSystem, path: str, src: str, uri_col: str, id_col: str) -> _Manifest:
    names = schema.names
    dup_names = sorted({c for c in names if names.count(c) > 1})
    if dup_names:
        raise InputError(f"manifest {src!r}: column name(s) {dup_names} appear more than once; rename them")
    if uri_col not in names:
        raise InputError(
            f"manifest {src!r} has no column {uri_col!r} (columns: {names}); set uri_column (--set uri_column=NAME)"
        )
    rest = [c for c in names if c not in (uri_col, id_col)]
    reserved = [c for c in rest if c in LISTING_COLUMNS + READ_COLUMNS]
    if reserved:
        raise InputError(f"manifest {src!r}: column(s) {reserved} are reserved by the pipeline; rename them")
    base = posixpath.dirname(src) if is_s3(src) else posixpath.dirname(to_uri(fs, path))
    fields = [pa.field("image_id", pa.string()), pa.field("uri", pa.string())] + [schema.field(c) for c in rest]
    return _Manifest(src, base, uri_col, id_col, rest, pa.schema(fields))


def _manifest_batches(fs: pafs.FileSystem, path: str, src: str, uri_column: str, image_id_column: str):
    schema, reader = _open_manifest(fs, path, src)
    spec = _manifest_spec(schema, fs, path, src, uri_column, image_id_column)
    row0 = 0
    it = iter(reader)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            break
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as e:
            raise _unreadable(src, e) from e
        yield _manifest_batch(batch, spec, row0)
        row0 += batch.num_rows
    log.info("manifest %s: %d row(s), passthrough columns %s", src, row0, spec.rest)


def _manifest_batch(batch: pa.RecordBatch, spec: _Manifest, row0: int):
    """One manifest batch -> (listing batch, uri digests, id digests or None)."""
    resolved = _resolve_uris(_string_column(batch, spec.uri_column, spec.src, row0), spec.base, spec.src)
    if spec.image_id_column in batch.schema.names:
        ids = _string_column(batch, spec.image_id_column, spec.src, row0, allow_int=True)
        id_digests, uri_digests = digests(ids), digests(resolved)
    else:
        out, uri_digests, id_digests = _uri_batch(resolved)
        ids = out.column("image_id")
    arrays = [ids, resolved] + [batch.column(c) for c in spec.rest]
    return pa.RecordBatch.from_arrays(arrays, schema=spec.schema), uri_digests, id_digests


def _string_column(batch: pa.RecordBatch, name: str, src: str, row0: int, allow_int: bool = False) -> pa.Array:
    """The column as non-blank strings; anything else is refused with the manifest's row numbers."""
    col = batch.column(name)
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if allow_int and pa.types.is_integer(col.type):
        col = col.cast(pa.string())
    if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
        raise InputError(
            f"manifest {src!r}: column {name!r} is not UTF-8 text (a Latin-1 or other encoding?); "
            "save the manifest as UTF-8"
        )
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise InputError(f"manifest {src!r}: column {name!r} has type {col.type}, it must hold strings (paths or ids)")
    blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(col), ""), True)
    if pc.any(blank).as_py():
        rows = row0 + np.flatnonzero(blank.to_numpy(zero_copy_only=False))
        raise InputError(f"manifest {src!r}: {_rows_text(rows)} have an empty or blank {name!r}")
    return col.cast(pa.string())


def _resolve_uris(uris: pa.Array, base: str, src: str) -> pa.Array:
    """Absolute, normalised uris (one spelling per file); unsupported schemes are refused.
    A batch of absolute local paths already in their one spelling is kept as it is (no per-row
    Python: the listing of a large manifest)."""
    if not pc.any(pc.match_substring_regex(uris, NEEDS_RESOLVING)).as_py():
        return uris
    out = []
    for u in uris.to_pylist():
        if "://" in u and not is_s3(u) and not u.lower().startswith("file://"):
            raise InputError(
                f"manifest {src!r}: uri {u!r} uses the scheme {u.split('://')[0]}://, "
                "only local paths and s3:// are supported"
            )
        out.append(normalize_uri(u if (is_s3(u) or u.startswith(("/", "file://"))) else posixpath.join(base, u)))
    return pa.array(out, pa.string())
