"""Ctrl-C stops the job, whatever the job is doing when it arrives.

Python turns SIGINT into a ``KeyboardInterrupt`` raised wherever the main thread happens to be.
Raised inside code that does not let it through (a finalizer run by the garbage collector or by
a reference count reaching zero, whose errors Python prints as "Exception ignored" and drops),
it is lost and the job goes on to the end: a Ctrl-C during Ray Data's start once went unnoticed
that way in CI (issue 25; not reproduced on demand since). So while the job runs,
:func:`stop_on_ctrl_c` installs its own handler, which remembers the Ctrl-C (a flag no code can
swallow) before raising; the job checks that flag at each of its own steps (:func:`check`:
after Ray starts, before and after each labelled batch, before each shard commit), and the
block cannot end normally with the flag set. Then ``errors.run_command`` prints the one
sentence, stops Ray and exits 130.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

__all__ = ["check", "stop_on_ctrl_c"]

log = logging.getLogger("m2fp_batch.job")

_pressed = threading.Event()


def check() -> None:
    """Raise ``KeyboardInterrupt`` if Ctrl-C was pressed while the job ran (even if the first
    ``KeyboardInterrupt`` was swallowed on its way)."""
    if _pressed.is_set():
        raise KeyboardInterrupt


def _handler(signum: int, frame) -> None:
    if not _pressed.is_set():
        log.info("Ctrl-C: stopping the job")
    _pressed.set()
    raise KeyboardInterrupt


@contextlib.contextmanager
def stop_on_ctrl_c() -> Iterator[None]:
    """While active (the main thread only; elsewhere it does nothing), a Ctrl-C is remembered as
    well as raised, and the block cannot end normally after one."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _pressed.clear()
    previous = signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        _restore(previous if previous is not None else signal.default_int_handler)
    check()


def _restore(previous) -> None:
    """Put the previous handler back. ``signal.signal`` first runs a pending Ctrl-C through the
    handler it replaces (ours, which raises): retry until it is back; the flag keeps the Ctrl-C."""
    while True:
        try:
            signal.signal(signal.SIGINT, previous)
            return
        except KeyboardInterrupt:
            continue
