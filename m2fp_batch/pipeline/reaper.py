"""Fate sharing for a local Ray: when the driver ends, even by ``kill -9``, its Ray processes end too.

Ray ties the GCS and the raylet of a local ``ray.init()`` to the driver, but the agents the
raylet starts (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) are re-parented to init and
live on, ignoring SIGTERM. Before starting a local Ray the driver puts a mark in its environment
(:data:`MARK`), which every Ray process it starts inherits, and starts this module as a watcher
in a session of its own (a Ctrl-C to the driver's terminal does not reach it). When the driver
is gone the watcher SIGKILLs every process that carries the mark, then exits. Linux only
(``/proc``); elsewhere nothing is started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

__all__ = ["MARK", "marked_processes", "start_watcher"]

MARK = "M2FP_RAY_OWNER"
POLL_S = 1.0


def marked_processes(mark: str) -> list[int]:
    """Pids of the processes whose environment holds ``MARK=mark`` (this process excluded)."""
    entry = f"{MARK}={mark}".encode()
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if entry in f.read().split(b"\0"):
                    pids.append(int(name))
        except OSError:  # gone, or not ours to read
            continue
    return pids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"  # a zombie has ended
    except (OSError, IndexError):
        return False


def start_watcher() -> str | None:
    """Mark this process's environment and start the watcher; returns the mark (None off Linux).

    Call right before ``ray.init()``; :func:`unmark` right after, so later children of the
    driver are not marked.
    """
    if not os.path.isdir("/proc"):
        return None
    mark = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k != MARK}
    subprocess.Popen(
        [sys.executable, "-m", "m2fp_batch.pipeline.reaper", str(os.getpid()), mark],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    os.environ[MARK] = mark
    return mark


def unmark() -> None:
    os.environ.pop(MARK, None)


def watch(driver_pid: int, mark: str, settle_s: float = 60.0) -> None:
    """Wait for ``driver_pid`` to end, then SIGKILL the processes marked ``mark`` until none is
    seen for three polls in a row (processes still being spawned are caught too) or ``settle_s``."""
    while _alive(driver_pid):
        time.sleep(POLL_S)
    end, quiet = time.time() + settle_s, 0
    while quiet < 3 and time.time() < end:
        pids = marked_processes(mark)
        quiet = 0 if pids else quiet + 1
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        time.sleep(POLL_S)


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2])
