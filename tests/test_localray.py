"""The fate-sharing watcher on plain processes (no Ray): what the driver leaves behind ends with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from m2fp_batch import localray

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="the watcher reads /proc (Linux)")

# A driver shaped like a local Ray: a "raylet" child that starts an "agent" in a session of its
# own with an empty environment (as setproctitle leaves /proc/PID/environ: no mark to read), and
# a marked process that is re-parented to init at once. It prints the pids, then waits.
DRIVER = """
import subprocess, sys, time
from m2fp_batch import localray
QUIET = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
SLEEP = [sys.executable, "-c", "import time; time.sleep(300)"]
if sys.argv[1:] == ["raylet"]:
    print(subprocess.Popen(SLEEP, env={}, **QUIET).pid, flush=True)
    time.sleep(300)
elif sys.argv[1:] == ["orphan"]:
    print(subprocess.Popen(SLEEP, **QUIET).pid, flush=True)
else:
    localray.start_watcher()
    raylet = subprocess.Popen([sys.executable, __file__, "raylet"], stdout=subprocess.PIPE, text=True)
    orphan = subprocess.run([sys.executable, __file__, "orphan"], capture_output=True, text=True).stdout.strip()
    localray.unmark()
    print(raylet.pid, raylet.stdout.readline().strip(), orphan, flush=True)
    time.sleep(300)
"""


def _running(pid: int) -> bool:
    p = localray.processes().get(pid)
    return p is not None


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    end = time.time() + seconds
    while time.time() < end and any(_running(p) for p in pids):
        time.sleep(0.2)
    return [p for p in pids if _running(p)]


def test_kill_9_of_the_driver_ends_its_tree_and_its_marked_processes(tmp_path):
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    (tmp_path / "driver.py").write_text(DRIVER)
    driver = subprocess.Popen([sys.executable, str(tmp_path / "driver.py")], env=env, stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in driver.stdout.readline().split()]
    try:
        assert len(pids) == 3 and all(_running(p) for p in pids)
        time.sleep(3 * localray.POLL_S)  # the watcher has polled the tree
        driver.kill()
        driver.wait(10)
        left = _wait_gone(pids, 20)
        assert not left, f"left running after the driver's kill -9: {left}"
        assert bystander.poll() is None, "a process outside the driver's tree was killed"
    finally:
        driver.kill()
        for pid in [*pids, bystander.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        bystander.wait(10)


def test_descendants_follow_parent_links_only():
    table = {
        10: localray.Proc("S", 1, 5),
        11: localray.Proc("S", 10, 6),
        12: localray.Proc("S", 11, 7),
        13: localray.Proc("S", 1, 8),
    }
    assert localray._descendants({10}, table) == {11, 12}
    assert localray._descendants({13}, table) == set()
