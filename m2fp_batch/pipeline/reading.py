"""The read stage: a block's files to bytes (or an error per row), a video's to its sampled frames, in
a Ray task.

Its own module, importing only pyarrow, numpy, storage and the video decoder (PyAV loads with the
first video), so a read worker starts in a fraction of a second and never imports the labelling
stack (skimage, torch)."""

from __future__ import annotations

import functools
import io
import os
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from m2fp_batch.pipeline.frames import VIDEO_FIELDS, video_rows
from m2fp_batch.storage import Filesystems, FileTooLargeError, NotARegularFileError, S3Options
from m2fp_batch.video import SNIFF_BYTES, Sampling, has_video_extension, looks_like_video

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


def _guarded(uri: str, read: Callable[[], Any]) -> tuple[Any, str | None, str | None]:
    """(what ``read()`` gives, error, error kind) of one input: a failure to read becomes words."""
    try:
        return read(), None, None
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


def _open_video(fss: Filesystems, uri: str):
    """A seekable file of ``uri`` when its first bytes are a video container's, else None (a photo,
    an empty or a foreign file under a video's name: read as a photo, whose decoder says what it is)."""
    f = fss.open_seekable(uri)
    if looks_like_video(f.read(SNIFF_BYTES)):
        f.seek(0)
        return f
    f.close()
    return None


def _columns(key: pa.Table, data: list, errors: list, kinds: list, secs: list) -> pa.Table:
    """Photos: ``key`` (listing rows) with the read columns, and null video columns and INPUT_ROWS."""
    n = key.num_rows
    table = (
        key.append_column("data", pa.array(data, pa.large_binary()))
        .append_column("read_error", pa.array(errors, pa.string()))
        .append_column("read_error_kind", pa.array(kinds, pa.string()))
        .append_column("read_s", pa.array(secs, pa.float64()))
    )
    for field in VIDEO_FIELDS.values():  # null: photos
        table = table.append_column(field, pa.nulls(n, field.type))
    return table


def read_batch(
    batch: pa.Table, s3: S3Options, max_bytes: int, sampling: Sampling, max_pixels: int
) -> Iterator[pa.Table]:
    """Yield the rows with ``data`` (the file's bytes, null on failure), ``read_error``, ``read_error_kind``,
    ``read_s``, the video columns and :data:`INPUT_ROWS`: a photo as its one row, a video as one row per
    sampled frame (``data``: the frame's pixels as a PPM image) and an error row if decoding failed.

    Only regular files are read, at most ``max_bytes + 1`` bytes each (see ``Filesystems.read_bytes``);
    a video is streamed from its file, whatever its size, one frame at a time. A file is a video by
    its first bytes: a video named .jpg is decoded as a video, a photo named .mp4 as a photo."""
    fss = Filesystems(s3)
    photos: list[int] = []
    data, errors, kinds, secs = [], [], [], []
    for i, uri in enumerate(batch.column("uri").to_pylist()):
        t0 = time.perf_counter()
        source, blob, err, kind = None, None, None, None
        if has_video_extension(uri):
            source, err, kind = _guarded(uri, functools.partial(_open_video, fss, uri))
        if source is None and (not has_video_extension(uri) or err is None):
            blob, err, kind = _guarded(uri, functools.partial(fss.read_bytes, uri, max_bytes))
            if blob is not None and looks_like_video(blob[:SNIFF_BYTES]):
                source = io.BytesIO(blob)
        if source is None:
            photos.append(i)
            data.append(blob if err is None else None)
            errors.append(err)
            kinds.append(kind)
            secs.append(time.perf_counter() - t0)
            continue
        if photos:  # the photos so far go first: a long video never holds them
            yield _columns(batch.take(photos), data, errors, kinds, secs)
            photos, data, errors, kinds, secs = [], [], [], [], []
        yield from video_rows(batch.slice(i, 1), source, sampling, max_pixels)
    if photos:
        yield _columns(batch.take(photos), data, errors, kinds, secs)


def read_stage(
    ds,
    s3: S3Options,
    guards: tuple[int, int],
    sampling: Sampling,
    cpus: float,
    concurrency: int,
    fn: Callable = read_batch,
):
    """``ds`` (listing rows) -> the rows with their bytes, a video's as its sampled frames (``fn``:
    :func:`read_batch`; ``guards``: max_bytes and max_pixels): Ray
    tasks that read at most :data:`READ_CALL_ROWS` files per call, whatever the size
    of the block they get (Ray Data joins a read task's blocks), so a task holds one output block
    of photos at a time (``target_max_block_size``: :data:`~.schedule.MAX_BLOCK_BYTES`, set by the job)."""
    import ray.data as rd

    return ds.map_batches(
        fn,
        fn_kwargs={"s3": s3, "max_bytes": guards[0], "sampling": sampling, "max_pixels": guards[1]},
        batch_format="pyarrow",
        batch_size=READ_CALL_ROWS,
        num_cpus=cpus,
        compute=rd.TaskPoolStrategy(size=concurrency),
    )
