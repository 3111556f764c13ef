"""Ray's internal ERROR lines that are not the user's problem, kept out of the job's log.

Ray Data hands every pool actor its own context and transform as object-store references, and
Ray's core worker then logs, at ERROR level and on every run, that the actor "has constructor
arguments in the object store and max_restarts > 0" (ray-project/ray#53727). The job needs
actor restarts (a worker killed by a photo is restarted; see the crash ledger), the references
live as long as the job, and nothing is wrong. The C++ core worker writes that line straight to
the process's stderr, so :func:`quiet_ray_internals` filters file descriptor 2 itself: known
lines are dropped and explained once; everything else passes through unchanged.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

__all__ = ["DRAINED", "KNOWN_NOISE", "quiet_ray_internals"]

# (substring of Ray's line, the one sentence the job prints instead, the first time)
KNOWN_NOISE = (
    (
        b"has constructor arguments in the object store and max_restarts > 0",
        b"m2fp-batch: Ray logs 'Actor ... has constructor arguments in the object store and max_restarts > 0' "
        b"for every pool actor (Ray Data passes its settings by reference; ray-project/ray#53727): harmless "
        b"here, the references live as long as the job; further such lines are not shown\n",
    ),
)


DRAINED = b"\x00m2fp-batch: stderr filter drained\n"  # written at the block's end, never shown
DRAIN_TIMEOUT_S = 5.0


def _forward(read_fd: int, write_fd: int, drained: threading.Event) -> None:
    """Copy lines from the pipe to the real stderr, dropping known noise (explained once)."""
    explained: set[bytes] = set()
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        for line in iter(pipe.readline, b""):
            if line == DRAINED:
                drained.set()
                continue
            match = next(((key, note) for key, note in KNOWN_NOISE if key in line), None)
            if match is None:
                os.write(write_fd, line)
            elif match[0] not in explained:
                explained.add(match[0])
                os.write(write_fd, match[1])


@contextlib.contextmanager
def quiet_ray_internals() -> Iterator[None]:
    """While active, this process's stderr (fd 2) goes through the filter.

    The forwarding thread outlives the block: processes started meanwhile (a local Ray) keep the
    pipe as their stderr, and their lines keep reaching the real stderr, filtered.
    """
    try:
        sys.stderr.flush()
        real = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2: nothing to filter
        yield
        return
    read_fd, write_fd = os.pipe()
    drained = threading.Event()
    args = (read_fd, real, drained)
    threading.Thread(target=_forward, args=args, name="ray-stderr-filter", daemon=True).start()
    saved = os.dup(2)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.write(2, DRAINED)  # every line written before it reaches the real stderr first
        os.dup2(saved, 2)
        os.close(saved)
        drained.wait(DRAIN_TIMEOUT_S)
