"""Give freed heap memory back to the operating system between the stages of one image.

The network's activations are freed when its forward returns, but glibc keeps freed chunks in its
arenas; the postprocess at the photo's full size then allocates fresh pages on top, and the
process's peak is the sum of both. ``malloc_trim(0)`` returns the free pages (also inside the
arenas, since glibc 2.8) in a few milliseconds, so the peak is the larger stage, not the sum
(docs/engine.md, memory per actor). A no-op where the C library is not glibc.

:data:`STRIP_PIXELS` bounds the other transient: wherever a whole photo is walked (copied out of
PIL, its labels counted or encoded), it is walked in strips of this many pixels."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["STRIP_PIXELS", "release_free_memory"]

# Pixels per strip wherever a whole photo is walked in rows or columns: the transient beside the image
# stays this small.
STRIP_PIXELS = 4 * 1024 * 1024


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


def release_free_memory() -> None:
    """``malloc_trim(0)`` where glibc provides it."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
