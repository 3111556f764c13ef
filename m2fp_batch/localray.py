"""A local Ray that shares its driver's fate: when the driver ends, even by ``kill -9``, its Ray
processes end too. :func:`init_local` is how the job, the service and training start one, and
:func:`stop_ray` how a command that exits early (an error, Ctrl-C) shuts down the Ray it started.

Ray ties the GCS and the raylet of a local ``ray.init()`` to the driver, but the agents the
raylet starts (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) are re-parented to init and
live on, ignoring SIGTERM. They also retitle themselves (setproctitle), which overwrites their
``/proc/PID/environ``, so no environment variable can be relied on to find them later.

So the driver starts this module as a watcher, in a session of its own (a Ctrl-C to the
driver's terminal does not reach it). While the driver lives, the watcher records its process
tree: every descendant with its start time, so a pid the kernel reuses is never hit. Before
starting Ray the driver also puts a mark in its environment (:data:`MARK`), which every Ray
process inherits; it catches the processes born in the driver's last moments, before a poll saw
them. When the driver is gone the watcher SIGKILLs the recorded processes still alive, their
descendants and every marked process, until none is left, then exits. Linux only (``/proc``);
elsewhere nothing is started.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Any, NamedTuple

__all__ = [
    "MARK",
    "WORKER_NICENESS",
    "Proc",
    "init_local",
    "marked_processes",
    "processes",
    "start_watcher",
    "stop_ray",
    "unmark",
    "watch",
]

MARK = "M2FP_RAY_OWNER"
POLL_S = 1.0  # while the driver lives
SETTLE_POLL_S = 0.25  # once it is gone: three quiet polls and the watcher ends
WORKER_NICENESS = "RAY_worker_niceness"  # Ray's setting for its workers' niceness (default 15)


class Proc(NamedTuple):
    """One line of ``/proc/PID/stat``, the fields the watcher needs."""

    state: str  # "Z": ended, not yet reaped
    ppid: int
    start: int  # clock ticks after boot: with the pid, names one process for good


def _proc(pid: int) -> Proc | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            rest = f.read().rsplit(b")", 1)[1].split()  # the name in (...) may hold spaces
        return Proc(rest[0].decode(), int(rest[1]), int(rest[19]))
    except (OSError, IndexError, ValueError):
        return None


def processes() -> dict[int, Proc]:
    """Every process now running (zombies left out), by pid."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            p = _proc(int(name))
            if p is not None and p.state != "Z":
                table[int(name)] = p
    return table


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


def _descendants(roots: set[int], table: dict[int, Proc]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, p in table.items():
        children.setdefault(p.ppid, []).append(pid)
    found, todo = set(), list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


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
        [sys.executable, "-m", "m2fp_batch.localray", str(os.getpid()), mark],
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


def init_local(**init_kwargs: Any) -> None:
    """``ray.init(address="local", **init_kwargs)`` with the watcher started first.

    The local Ray's workers do the command's own work, so they run at its priority: Ray starts
    workers at niceness 15 by default (``RAY_worker_niceness``; a user's setting wins), which on a
    shared machine left ``m2fp-batch train``'s worker a sliver of the CPU beside any other process.
    """
    import ray

    os.environ.setdefault(WORKER_NICENESS, "0")
    start_watcher()
    try:
        ray.init(address="local", **init_kwargs)
    finally:
        unmark()


def _record(known: dict[int, int], pids: set[int], table: dict[int, Proc]) -> None:
    for pid in pids - {os.getpid()}:
        if pid in table:
            known.setdefault(pid, table[pid].start)


def watch(driver_pid: int, mark: str, settle_s: float = 60.0) -> None:
    """Record the driver's process tree until ``driver_pid`` ends, then SIGKILL what is left of
    it and every process marked ``mark``, until none is seen for three polls in a row (processes
    still being spawned are caught too) or for ``settle_s``."""
    driver = _proc(driver_pid)
    known: dict[int, int] = {}  # pid -> start time
    while driver is not None:
        table = processes()
        now = table.get(driver_pid)
        if now is None or now.start != driver.start:
            break
        _record(known, _descendants({driver_pid}, table), table)
        time.sleep(POLL_S)
    end, quiet = time.time() + settle_s, 0
    while quiet < 3 and time.time() < end:
        table = processes()
        live = {pid for pid, start in known.items() if pid in table and table[pid].start == start}
        targets = live | _descendants(live, table) | (set(marked_processes(mark)) & set(table))
        targets.discard(os.getpid())
        _record(known, targets, table)
        quiet = 0 if targets else quiet + 1
        for pid in targets:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        time.sleep(SETTLE_POLL_S)


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2])


def stop_ray() -> None:
    """Shut down the Ray this process started or joined (workers, raylet, GCS of a local Ray)."""
    ray = sys.modules.get("ray")
    if ray is None:
        return
    try:
        if ray.is_initialized():
            ray.shutdown()
    except Exception:  # noqa: BLE001 - best effort while exiting
        logging.getLogger(__name__).debug("ray.shutdown failed while exiting", exc_info=True)
