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

from m2fp_batch.storage import Filesystems, is_s3, to_uri

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
MANIFEST_EXTENSIONS = (".parquet", ".pq", ".csv")
KEY_COLUMNS = ("image_id", "uri", "shard")


class InputError(ValueError):
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
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"input {src!r} does not exist")
    if info.type == pafs.FileType.File:
        if not path.lower().endswith(MANIFEST_EXTENSIONS):
            raise InputError(f"input {src!r} is a file but not a manifest (.parquet or .csv)")
        table = _read_manifest(fs, path, src, uri_column, image_id_column)
    else:
        table = _list_directory(fs, path, src)
    if table.num_rows == 0:
        raise InputError(f"input {src!r} holds no images (extensions: {', '.join(IMAGE_EXTENSIONS)}, any case)")
    return table.take(pc.sort_indices(table, [("uri", "ascending")]))


def _list_directory(fs: pafs.FileSystem, path: str, src: str) -> pa.Table:
    if isinstance(fs, pafs.LocalFileSystem):
        # os.walk, not pyarrow: pyarrow drops dangling symlinks, which must become "missing" rows
        uris = sorted(
            os.path.join(d, f) for d, _, files in os.walk(path) for f in files if f.lower().endswith(IMAGE_EXTENSIONS)
        )
    else:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
        uris = sorted(
            to_uri(fs, i.path)
            for i in infos
            if i.type != pafs.FileType.Directory and i.path.lower().endswith(IMAGE_EXTENSIONS)
        )
    log.info("listed %d image(s) under %s", len(uris), src)
    return pa.table({"image_id": [image_id_for(u) for u in uris], "uri": uris})


def _read_manifest(fs: pafs.FileSystem, path: str, src: str, uri_column: str, image_id_column: str) -> pa.Table:
    try:
        if path.lower().endswith(".csv"):
            with fs.open_input_stream(path) as f:
                table = pacsv.read_csv(f)
        else:
            table = pq.read_table(path, filesystem=fs)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"manifest {src!r} cannot be read: {e}") from e
    if uri_column not in table.column_names:
        raise InputError(
            f"manifest {src!r} has no column {uri_column!r} (columns: {table.column_names}); "
            "set uri_column (--set uri_column=NAME)"
        )
    uris = table.column(uri_column).cast(pa.string())
    if uris.null_count:
        raise InputError(f"manifest {src!r}: {uris.null_count} row(s) have an empty {uri_column!r}")
    base = posixpath.dirname(src) if is_s3(src) else posixpath.dirname(to_uri(fs, path))
    resolved = [u if (is_s3(u) or u.startswith("/")) else posixpath.join(base, u) for u in uris.to_pylist()]
    if image_id_column in table.column_names:
        ids = table.column(image_id_column).cast(pa.string())
        if ids.null_count:
            raise InputError(f"manifest {src!r}: {ids.null_count} row(s) have an empty {image_id_column!r}")
        ids = ids.to_pylist()
    else:
        ids = [image_id_for(u) for u in resolved]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dups = [i for i in ids if i in seen or seen.add(i)]
        raise InputError(f"manifest {src!r}: duplicate image ids, e.g. {dups[:3]} (each input must appear once)")
    rest = [c for c in table.column_names if c not in (uri_column, image_id_column)]
    reserved = [c for c in rest if c in KEY_COLUMNS]
    if reserved:
        raise InputError(f"manifest {src!r}: column(s) {reserved} are reserved; rename them")
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
    stored_rest = [c for c in stored.column_names if c not in KEY_COLUMNS]
    new_rest = [c for c in new.column_names if c not in KEY_COLUMNS]
    if stored_rest != new_rest:
        raise InputError(
            f"the manifest's columns changed since the first run ({stored_rest} -> {new_rest}); "
            "use --overwrite or another output directory"
        )
    first = int(pc.max(stored.column("shard")).as_py()) + 1
    added = assign_shards(new, shard_size, first).cast(stored.schema)
    return pa.concat_tables([stored, added]), new.num_rows
