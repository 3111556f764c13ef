"""Listing the inputs: an image directory (recursive) or a Parquet/CSV manifest.

The listing is a pyarrow table with ``image_id``, ``uri``, ``shard`` and the manifest's other
columns (passthrough), sorted by uri; shards are fixed-size chunks of that order. The first run
saves it as ``DIR/_inputs.parquet``; a rerun reuses it, so every input keeps its shard, and
inputs that appeared since are appended as new shards.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from m2fp_batch.errors import UserError
from m2fp_batch.pipeline.reading import escape_name
from m2fp_batch.storage import Filesystems, is_s3, normalize_uri, to_uri

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
MANIFEST_EXTENSIONS = (".parquet", ".pq", ".csv")
# The listing's own columns (and every output row's keys); a manifest's other columns pass through.
LISTING_COLUMNS = ("image_id", "uri", "shard")
# Columns the read stage adds to each batch (reading.read_batch): a passthrough column of that
# name would collide inside the pipeline.
READ_COLUMNS = ("data", "read_error", "read_error_kind", "read_s")
MAX_ROWS_SHOWN = 5


class InputError(UserError, ValueError):
    """The input cannot be listed (missing, empty, bad manifest); the message says why."""


def image_id_for(uri: str) -> str:
    """Stable id of an input without a manifest id: sha1 of the uri, 20 hex digits."""
    return hashlib.sha1(uri.encode("utf-8")).hexdigest()[:20]


def list_inputs(
    src: str, filesystems: Filesystems, uri_column: str = "uri", image_id_column: str = "image_id"
) -> pa.Table:
    """List ``src`` -> table (image_id, uri, passthrough...) sorted by uri, without shards.

    Raises:
        InputError: ``src`` does not exist, holds no images, or the manifest is malformed.
    """
    fs, path = filesystems.resolve(src)
    try:
        info = fs.get_file_info(path)
    except OSError as e:
        raise InputError(f"input {src!r} cannot be reached: {' '.join(str(e).split())}") from e
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"input {src!r} does not exist")
    if info.type == pafs.FileType.File:
        if not path.lower().endswith(MANIFEST_EXTENSIONS):
            raise InputError(f"input {src!r} is a file but not a manifest (.parquet or .csv)")
        table = _read_manifest(fs, path, src, uri_column, image_id_column)
    else:
        table = _list_directory(fs, path, src)
    if table.num_rows == 0:
        if info.type == pafs.FileType.File:
            raise InputError(f"manifest {src!r} has no rows: nothing to label")
        raise InputError(f"input {src!r} holds no images (extensions: {', '.join(IMAGE_EXTENSIONS)}, any case)")
    return table.take(pc.sort_indices(table, [("uri", "ascending")]))


def _list_directory(fs: pafs.FileSystem, path: str, src: str) -> pa.Table:
    if isinstance(fs, pafs.LocalFileSystem):
        # os.walk, not pyarrow: pyarrow drops dangling symlinks, which must become "missing" rows
        uris = sorted(
            os.path.join(d, f) for d, _, files in os.walk(path) for f in files if f.lower().endswith(IMAGE_EXTENSIONS)
        )
        uris = _escape_undecodable_names(uris, src)
    else:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
        uris = sorted(
            to_uri(fs, i.path)
            for i in infos
            if i.type != pafs.FileType.Directory and i.path.lower().endswith(IMAGE_EXTENSIONS)
        )
    log.info("listed %d image(s) under %s", len(uris), src)
    return pa.table({"image_id": [image_id_for(u) for u in uris], "uri": uris})


def _escape_undecodable_names(uris: list[str], src: str) -> list[str]:
    """File names that are not UTF-8 cannot be stored as they are in the Parquet ``uri`` column:
    each keeps its bytes escaped (``reading.escape_name``) and becomes a ``bad_name`` error row."""
    escaped = [escape_name(u) for u in uris]
    bad = sum(e is not u for e, u in zip(escaped, uris, strict=True))
    if bad:
        log.warning(
            "input %s: %d file name(s) are not valid UTF-8, e.g. %r: each becomes an error row (bad_name); "
            "rename them to UTF-8 (e.g. convmv -f latin1 -t utf8 -r --notest DIR) and run again",
            src, bad, next(e for e, u in zip(escaped, uris, strict=True) if e is not u),
        )  # fmt: skip
    return escaped


def _rows_text(mask: list[bool]) -> str:
    """Manifest row numbers (1 = first data row) where ``mask`` holds, a few shown."""
    rows = [i + 1 for i, m in enumerate(mask) if m]
    shown = ", ".join(map(str, rows[:MAX_ROWS_SHOWN])) + (" ..." if len(rows) > MAX_ROWS_SHOWN else "")
    return f"{len(rows)} row(s) ({shown}; counting data rows from 1)"


def _load_manifest(fs: pafs.FileSystem, path: str, src: str) -> pa.Table:
    try:
        if path.lower().endswith(".csv"):
            with fs.open_input_stream(path) as f:
                return pacsv.read_csv(f)
        return pq.read_table(path, filesystem=fs)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as e:
        raise InputError(f"manifest {src!r} cannot be read: {' '.join(str(e).split())[:300]}") from e


def _string_column(table: pa.Table, name: str, src: str, allow_int: bool = False) -> list[str]:
    """The column as non-blank strings; anything else is refused with the manifest's row numbers."""
    col = table.column(name)
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
    values = col.to_pylist()
    blank = [v is None or not v.strip() for v in values]
    if any(blank):
        raise InputError(f"manifest {src!r}: {_rows_text(blank)} have an empty or blank {name!r}")
    return values


def _resolve_uris(uris: list[str], base: str, src: str) -> list[str]:
    """Absolute, normalised uris (one spelling per file); unsupported schemes are refused."""
    out = []
    for u in uris:
        if "://" in u and not is_s3(u) and not u.lower().startswith("file://"):
            raise InputError(
                f"manifest {src!r}: uri {u!r} uses the scheme {u.split('://')[0]}://, "
                "only local paths and s3:// are supported"
            )
        out.append(normalize_uri(u if (is_s3(u) or u.startswith(("/", "file://"))) else posixpath.join(base, u)))
    return out


def _refuse_duplicates(values: list[str], what: str, src: str) -> None:
    first: dict[str, int] = {}
    dup = [False] * len(values)
    for i, v in enumerate(values):
        if v in first:
            dup[i] = dup[first[v]] = True
        else:
            first[v] = i
    if any(dup):
        raise InputError(f"manifest {src!r}: {_rows_text(dup)} name the same {what} (each input must appear once)")


def _read_manifest(fs: pafs.FileSystem, path: str, src: str, uri_column: str, image_id_column: str) -> pa.Table:
    table = _load_manifest(fs, path, src)
    names = table.column_names
    dup_names = sorted({c for c in names if names.count(c) > 1})
    if dup_names:
        raise InputError(f"manifest {src!r}: column name(s) {dup_names} appear more than once; rename them")
    if uri_column not in names:
        raise InputError(
            f"manifest {src!r} has no column {uri_column!r} (columns: {names}); set uri_column (--set uri_column=NAME)"
        )
    base = posixpath.dirname(src) if is_s3(src) else posixpath.dirname(to_uri(fs, path))
    resolved = _resolve_uris(_string_column(table, uri_column, src), base, src)
    _refuse_duplicates(resolved, "file", src)
    if image_id_column in names:
        ids = _string_column(table, image_id_column, src, allow_int=True)
        _refuse_duplicates(ids, image_id_column, src)
    else:
        ids = [image_id_for(u) for u in resolved]
    rest = [c for c in names if c not in (uri_column, image_id_column)]
    reserved = [c for c in rest if c in LISTING_COLUMNS + READ_COLUMNS]
    if reserved:
        raise InputError(f"manifest {src!r}: column(s) {reserved} are reserved by the pipeline; rename them")
    out = pa.table({"image_id": ids, "uri": resolved})
    for c in rest:
        out = out.append_column(table.schema.field(c), table.column(c))
    log.info("manifest %s: %d row(s), passthrough columns %s", src, out.num_rows, rest)
    return out


def assign_shards(listing: pa.Table, shard_size: int, first_shard: int = 0) -> pa.Table:
    """Add ``shard`` = ``first_shard + row // shard_size`` (the listing is already sorted)."""
    shards = pa.array([first_shard + i // shard_size for i in range(listing.num_rows)], pa.int32())
    return listing.add_column(2, pa.field("shard", pa.int32(), nullable=False), shards)


def extend_listing(stored: pa.Table, current: pa.Table, shard_size: int) -> tuple[pa.Table, int]:
    """Append inputs of ``current`` not in ``stored`` as new shards; returns (listing, added).

    Raises:
        InputError: the passthrough columns changed (the outputs would not share a schema).
    """
    known = set(stored.column("image_id").to_pylist())
    mask = pa.array([i not in known for i in current.column("image_id").to_pylist()])
    new = current.filter(mask)
    if new.num_rows == 0:
        return stored, 0
    stored_rest = [f"{f.name}: {f.type}" for f in stored.schema if f.name not in LISTING_COLUMNS]
    new_rest = [f"{f.name}: {f.type}" for f in new.schema if f.name not in LISTING_COLUMNS]
    if stored_rest != new_rest:
        raise InputError(
            f"the manifest's passthrough columns changed since the first run ({stored_rest} -> {new_rest}); "
            "one output holds one schema: use --overwrite or another output directory"
        )
    first = int(pc.max(stored.column("shard")).as_py()) + 1
    added = assign_shards(new, shard_size, first).cast(stored.schema)
    return pa.concat_tables([stored, added]), new.num_rows
