"""A real kill: ``m2fp-batch train`` is SIGKILLed mid-run, ``--resume`` continues from its last checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from .helpers import samples, write_cihp_dir


def _kill_session(sid: int) -> None:
    """SIGKILL every process of the session we started (the driver and the Ray it started)."""
    import psutil

    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid:
                p.kill()
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.cluster
def test_sigkill_then_resume(tiny_model_dir, tmp_path):
    data = write_cihp_dir(tmp_path / "cihp", samples())
    out = tmp_path / "new"
    cmd = [
        sys.executable,
        "-m",
        "m2fp_batch.cli",
        "train",
        "--data",
        str(data),
        "--model",
        str(tiny_model_dir),
        "--out",
        str(out),
        "--steps",
        "30",
        "--batch",
        "2",
        "--crop",
        "64",
        "--num-points",
        "128",
        "--checkpoint-every",
        "2",
    ]
    env = {**os.environ, "RAY_TMPDIR": os.environ.get("RAY_TMPDIR", "/tmp/r11")}
    ckpt = out / "checkpoints" / "last.pt"
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ckpt.exists(), "no checkpoint was written"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        _kill_session(proc.pid)
    killed_at = torch.load(ckpt, weights_only=True)["step"]
    assert 2 <= killed_at < 30 and not (out / "training.json").exists()

    done = subprocess.run(
        cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=400, start_new_session=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"at step {killed_at}" in done.stdout + done.stderr
    record = json.loads((out / "training.json").read_text())
    assert record["steps"] == 30 and [h["step"] for h in record["losses"]] == list(range(1, 31))
