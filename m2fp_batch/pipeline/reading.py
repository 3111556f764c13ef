"""The read stage: a block's files to bytes (or an error per row), in a Ray task.

Its own module, importing only pyarrow and storage, so a read worker starts in a fraction of a
second and never imports the labelling stack (skimage, torch)."""

from __future__ import annotations

import time

import pyarrow as pa

from m2fp_batch.storage import Filesystems, FileTooLargeError, NotARegularFileError, S3Options

__all__ = ["read_batch"]


def read_batch(batch: pa.Table, s3: S3Options, max_bytes: int) -> pa.Table:
    """Add ``data`` (the file's bytes, null on failure), ``read_error``, ``read_error_kind``, ``read_s``.

    Only regular files are read, at most ``max_bytes + 1`` bytes each (see ``Filesystems.read_bytes``).
    """
    fss = Filesystems(s3)
    data, errors, kinds, secs = [], [], [], []
    for uri in batch.column("uri").to_pylist():
        t0 = time.perf_counter()
        blob, err, kind = None, None, None
        try:
            blob = fss.read_bytes(uri, max_bytes)
        except NotARegularFileError as e:
            err, kind = f"{uri}: {e}", "unreadable"
        except FileTooLargeError as e:
            err, kind = f"{e} ({uri})", "too_large"
        except FileNotFoundError:
            err, kind = f"the file does not exist: {uri}", "missing"
        except IsADirectoryError:
            err, kind = f"a directory, not a file: {uri}", "unreadable"
        except PermissionError as e:
            err, kind = f"permission denied reading {uri}: {e}", "unreadable"
        except (OSError, ValueError) as e:
            msg = str(e)
            if "does not exist" in msg or "NoSuchKey" in msg or "Path does not exist" in msg:
                err, kind = f"the file does not exist: {uri}", "missing"
            else:
                err, kind = f"could not read {uri}: {msg}", "unreadable"
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
