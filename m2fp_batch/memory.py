"""Give freed heap memory back to the operating system between the stages of one image.

The network's activations are freed when its forward returns, but glibc keeps freed chunks in its
arenas; the postprocess at the photo's full size then allocates fresh pages on top, and the
process's peak is the sum of both. ``malloc_trim(0)`` returns the free pages (also inside the
arenas, since glibc 2.8) in a few milliseconds, so the peak is the larger stage, not the sum
(docs/engine.md, memory per actor). A no-op where the C library is not glibc.

:data:`STRIP_PIXELS` bounds the other transient: wherever a whole photo is walked (copied out of
PIL, its labels counted or encoded), it is walked in strips of this many pixels.

:func:`release_mapped_store_pages` is the driver's counterpart: the pages of Ray's shared-memory
object store that a process has read stay in its resident set after the objects are freed, and
the store places new objects on fresh pages, so a driver that reads every output row would grow
by the rows it has read (docs/job.md, very large stores). ``madvise(MADV_DONTNEED)`` on that
shared mapping drops the pages from the process only: the store's memory and every object in it
stay as they are, and a page read again is mapped again."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

__all__ = ["STRIP_PIXELS", "release_free_memory", "release_mapped_store_pages"]

log = logging.getLogger(__name__)

# Pixels per strip wherever a whole photo is walked in rows or columns: the transient beside the image
# stays this small.
STRIP_PIXELS = 4 * 1024 * 1024


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        return None


def _malloc_trim():
    lib = _libc()
    return getattr(lib, "malloc_trim", None)  # not glibc (musl, macOS): nothing to trim


_MADV_DONTNEED = 4  # Linux
# Ray's shared-memory object store is mapped from a /dev/shm/plasma file (a random suffix); an object Ray had to
# allocate on disk when the store was full lives in another mapping, which is left as it is
STORE_MAPPING = "/plasma"


def _store_ranges(maps: str) -> list[tuple[int, int]]:
    """The address ranges of the shared object-store mappings in a ``/proc/PID/maps`` text."""
    ranges = []
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and STORE_MAPPING in fields[5] and fields[1].endswith("s"):  # shared mappings only
            start, _, end = fields[0].partition("-")
            ranges.append((int(start, 16), int(end, 16)))
    return ranges


def release_mapped_store_pages() -> int:
    """Drop this process's mapping of the object-store pages it has read; returns the bytes advised
    (0 where there is no such mapping, or the platform is not Linux with glibc)."""
    lib = _libc()
    madvise = getattr(lib, "madvise", None)
    try:
        with open("/proc/self/maps") as f:
            ranges = _store_ranges(f.read())
    except OSError:
        return 0
    if madvise is None:
        return 0
    done = 0
    for start, end in ranges:
        if madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_DONTNEED) == 0:
            done += end - start
        else:
            log.debug("madvise on the object store's mapping failed (errno %d)", ctypes.get_errno())
    return done


def release_free_memory() -> None:
    """``malloc_trim(0)`` where glibc provides it."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
