"""Ctrl-C during the job: a KeyboardInterrupt swallowed on its way (raised inside a finalizer,
which Python only prints as "Exception ignored") still ends the job's block."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SWALLOWED = r"""
import os, signal, time
from m2fp_batch.pipeline import interrupt

class Finalizer:
    def __del__(self):  # where Python runs the SIGINT handler: its KeyboardInterrupt is dropped
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):
            time.sleep(0.001)

outcome = "ended normally"
try:
    with interrupt.stop_on_ctrl_c():
        f = Finalizer()
        del f
        print("the block went on after the swallowed Ctrl-C", flush=True)
except KeyboardInterrupt:
    outcome = "KeyboardInterrupt"
print(outcome, signal.getsignal(signal.SIGINT) is signal.default_int_handler, flush=True)
"""


def test_a_swallowed_ctrl_c_still_stops_the_block():
    res = subprocess.run([sys.executable, "-c", SWALLOWED], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "Exception ignored" in res.stderr  # the first KeyboardInterrupt was indeed lost
    assert res.stdout.splitlines() == ["the block went on after the swallowed Ctrl-C", "KeyboardInterrupt True"]


def test_without_ctrl_c_the_block_ends_normally_and_the_handler_is_restored():
    from m2fp_batch.pipeline import interrupt

    before = signal.getsignal(signal.SIGINT)
    with interrupt.stop_on_ctrl_c():
        assert signal.getsignal(signal.SIGINT) is not before
        interrupt.check()
    assert signal.getsignal(signal.SIGINT) is before
