"""A node lost mid-job: a head (the driver's node) and a second node, 1 CPU each, so one
labelling actor must run on each. The second node is SIGKILLed (its raylet, object store and
workers) while the job labels; the first run must still finish with rc 0 and every input
exactly once: the crash ledger lives on the driver's node, and Ray Data retries the lost
actor's blocks on the survivor."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
from cluster import ray_head, ray_worker
from test_two_nodes import _photos

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
PHOTOS = 40


def _kill_node(pid: int) -> list[int]:
    """SIGKILL a ``ray start --block`` node and every process it started (no clean shutdown)."""
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGKILL)
    return [p.pid for p in procs]


def _job(gcs: str, env: dict[str, str], src: Path, out: Path, model: Path) -> subprocess.Popen:
    """The job on the cluster, started; its log on stderr (a progress line per labelled block)."""
    cmd = [
        sys.executable, "-m", "m2fp_batch.cli", "run", "--input", str(src), "--output", str(out),
        "--model", str(model), "--address", gcs, "--shard-size", "4", "--batch-size", "1",
        "--set", "cpus_per_actor=1", "--set", "progress_interval_s=0.1",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
    return proc


def test_a_lost_worker_node_never_stops_the_job(tmp_path, tiny_model_dir):
    old = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "token"
    log: list[str] = []
    killed_at = None
    try:
        with (
            ray_head(num_cpus=1, multi_node=True) as (gcs, _, env, _),
            ray_worker(gcs, {**env, "RAY_raylet_start_wait_time_s": "300"}, num_cpus=1) as node,  # a busy CI
        ):
            uris = _photos(tmp_path / "in", PHOTOS)
            proc = _job(gcs, env, tmp_path / "in", tmp_path / "out", tiny_model_dir)
            for line in proc.stderr:
                log.append(line)
                if killed_at is None and "committing shard" in line:  # the first shard's rows are in: mid-job
                    killed_at = line
                    _kill_node(node)
            proc.wait(timeout=600)
    finally:
        if old is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = old
    text = "".join(log)
    assert killed_at is not None, text[-3000:]
    assert proc.returncode == 0, text[-4000:]
    rows = pq.read_table(tmp_path / "out").to_pylist()
    assert sorted(r["uri"] for r in rows) == uris, "every input exactly once"
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows if r["error"]]
    run = json.loads((tmp_path / "out" / "_run.json").read_text())
    assert run["complete"] and run["run"]["labelled_this_run"] == PHOTOS
    loads = run["run"]["model_loads_per_node"]
    assert len(loads) == 2, (loads, text[-3000:])  # one actor ran on the node that was lost
    assert "committing shard" in text[text.index(killed_at) + len(killed_at) :], killed_at  # it died mid-job
