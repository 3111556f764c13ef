"""The read stage: a block's files to bytes (or an error per row), in a Ray task.

Its own module, importing only pyarrow and storage, so a read worker starts in a fraction of a
second and never imports the labelling stack (skimage, torch)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable

import pyarrow as pa

from m2fp_batch.storage import Filesystems, FileTooLargeError, NotARegularFileError, S3Options

__all__ = ["READ_CALL_ROWS", "escape_name", "read_batch", "read_stage", "unescape_name"]

# Files per call of the read stage: what a read task holds beside the block of photos it is building
READ_CALL_ROWS = 128

_ESCAPE = re.compile(rb"\\(\\|x[0-9a-f]{2})")  # what escape_name writes


def escape_name(path: str) -> str:
    """A local path as a UTF-8 uri. A name that is not valid UTF-8 (``os.walk`` gives its bytes as
    surrogates) keeps every byte: backslashes doubled, each undecodable byte as ``\\xNN``;
    :func:`unescape_name` gives the bytes back. A valid name is returned as it is."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path).replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")
    return path


def unescape_name(uri: str) -> bytes | None:
    """The bytes of a local path that :func:`escape_name` escaped, or None when ``uri`` names
    no such file (it is a valid name, an s3:// key, or the file is gone)."""
    if "\\" not in uri or "://" in uri:
        return None
    raw = _ESCAPE.sub(lambda m: b"\\" if m.group(1) == b"\\" else bytes([int(m.group(1)[1:], 16)]), uri.encode())
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw if os.path.lexists(raw) else None
    return None


def _read_one(fss: Filesystems, uri: str, max_bytes: int) -> tuple[bytes | None, str | None, str | None]:
    """(bytes, error, error kind) of one input."""
    try:
        return fss.read_bytes(uri, max_bytes), None, None
    except NotARegularFileError as e:
        return None, f"{uri}: {e}", "unreadable"
    except FileTooLargeError as e:
        return None, f"{e} ({uri})", "too_large"
    except FileNotFoundError:
        if unescape_name(uri) is not None:
            return None, f"the file name is not valid UTF-8: {uri} (its bytes escaped); rename it to UTF-8", "bad_name"
        return None, f"the file does not exist: {uri}", "missing"
    except IsADirectoryError:
        return None, f"a directory, not a file: {uri}", "unreadable"
    except PermissionError as e:
        return None, f"permission denied reading {uri}: {e}", "unreadable"
    except (OSError, ValueError) as e:
        msg = str(e)
        if "does not exist" in msg or "NoSuchKey" in msg or "Path does not exist" in msg:
            return None, f"the file does not exist: {uri}", "missing"
        return None, f"could not read {uri}: {msg}", "unreadable"


def read_batch(batch: pa.Table, s3: S3Options, max_bytes: int) -> pa.Table:
    """Add ``data`` (the file's bytes, null on failure), ``read_error``, ``read_error_kind``, ``read_s``.

    Only regular files are read, at most ``max_bytes + 1`` bytes each (see ``Filesystems.read_bytes``).
    """
    fss = Filesystems(s3)
    data, errors, kinds, secs = [], [], [], []
    for uri in batch.column("uri").to_pylist():
        t0 = time.perf_counter()
        blob, err, kind = _read_one(fss, uri, max_bytes)
        data.append(blob)
        errors.append(err)
        kinds.append(kind)
        secs.append(time.perf_counter() - t0)
    return (
        batch.append_column("data", pa.array(data, pa.large_binary()))
        .append_column("read_error", pa.array(errors, pa.string()))
        .append_column("read_error_kind", pa.array(kinds, pa.string()))
        .append_column("read_s", pa.array(secs, pa.float64()))
    )


def read_stage(ds, s3: S3Options, max_bytes: int, cpus: float, concurrency: int, fn: Callable = read_batch):
    """``ds`` (listing rows) -> the same rows with their bytes (``fn``: :func:`read_batch`): Ray
    tasks that read at most :data:`READ_CALL_ROWS` files per call, whatever the size
    of the block they get (Ray Data joins a read task's blocks), so a task holds one output block
    of photos at a time (``target_max_block_size``: :data:`~.schedule.MAX_BLOCK_BYTES`, set by the job)."""
    import ray.data as rd

    return ds.map_batches(
        fn,
        fn_kwargs={"s3": s3, "max_bytes": max_bytes},
        batch_format="pyarrow",
        batch_size=READ_CALL_ROWS,
        num_cpus=cpus,
        compute=rd.TaskPoolStrategy(size=concurrency),
    )
