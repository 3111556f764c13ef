"""The job's start and its own machinery, without a cluster: the pool's shape (fixed or
autoscaling), block sizes, the start-up timeline and actor start-ups in ``_run.json``, error rows
that skip the crash ledger, and Ray's internal ERROR line filtered from stderr."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pytest
from test_worker import _batch

from m2fp_batch.pipeline.config import JobSettings
from m2fp_batch.pipeline.progress import Timeline, actor_startup
from m2fp_batch.pipeline.schedule import MAX_BLOCK_ROWS, MAX_BLOCKS, block_plan, block_rows, pool_size, pool_strategy
from m2fp_batch.pipeline.worker import ActorStartup, CrashLedger, Labeler, _node_id
from m2fp_batch.schema import output_schema
from m2fp_batch.settings import EngineSettings

REPO = Path(__file__).resolve().parents[2]


def test_fixed_cluster_starts_every_actor_autoscaling_keeps_its_minimum():
    fixed = pool_strategy(JobSettings(input="x", output="y"), 8)
    assert (fixed.min_size, fixed.max_size) == (8, 8)
    scaling = pool_strategy(JobSettings(input="x", output="y", autoscaling=True, min_actors=2), 8)
    assert (scaling.min_size, scaling.max_size) == (2, 8)


class TwoNodes:
    """What ``pool_size`` reads of Ray: two alive 1-CPU nodes."""

    @staticmethod
    def nodes():
        return [{"Alive": True, "Resources": {"CPU": 1.0}}, {"Alive": True, "Resources": {"CPU": 1.0}}]


def test_fixed_pool_never_exceeds_what_the_cluster_fits():
    base = JobSettings(input="x", output="y", max_actors=10)
    assert pool_size(base, TwoNodes) == 2  # all 10 could never start at once
    assert pool_size(JobSettings(input="x", output="y"), TwoNodes) == 2
    assert pool_size(dataclasses.replace(base, autoscaling=True), TwoNodes) == 10  # the cluster may grow


def test_autoscaling_is_a_setting():
    cfg = JobSettings.from_sources(None, {"input": "x", "output": "y", "autoscaling": "true", "min_actors": "3"})
    assert cfg.autoscaling and cfg.min_actors == 3
    assert JobSettings.from_sources(None, {"input": "x", "output": "y"}).autoscaling is False


@pytest.mark.parametrize(
    ("pending", "actors", "batch", "want"),
    [
        (24, 2, 4, 4),  # small job: blocks of one batch
        (24, 2, 1, 3),  # a quarter of an actor's share
        (3, 2, 1, 1),  # the end of a job: one batch
        (10_000, 2, 4, MAX_BLOCK_ROWS),  # many rows: large blocks (the ceiling)
        (1_000_000, 1000, 4, 250),  # many actors: a quarter of an actor's share
    ],
)
def test_block_rows(pending, actors, batch, want):
    assert block_rows(pending, actors, batch) == want


def _blocks(shard_rows: list[int], actors: int, batch: int) -> list[tuple[int, int]]:
    """(shard, rows) of each block of the plan over shards of ``shard_rows`` rows."""
    sizes = list(block_plan(enumerate(shard_rows), sum(shard_rows), actors, batch))
    shard_of, s = [], 0
    for shard, n in enumerate(shard_rows):
        shard_of += [shard] * n
    out = []
    for n in sizes:
        assert len(set(shard_of[s : s + n])) == 1, "a block crosses a shard"
        out.append((shard_of[s], n))
        s += n
    return out


def _cut(rows: int, shard_size: int, actors: int, batch: int) -> list[tuple[int, int]]:
    return _blocks([min(shard_size, rows - s) for s in range(0, rows, shard_size)], actors, batch)


@pytest.mark.parametrize(
    ("rows", "shard_size", "actors", "batch"), [(24, 64, 2, 1), (10_000, 64, 2, 4), (997, 100, 3, 2)]
)
def test_blocks_shrink_toward_the_end_and_keep_every_row_in_order(rows, shard_size, actors, batch):
    cut = _cut(rows, shard_size, actors, batch)
    assert sum(n for _, n in cut) == rows
    assert max(n for _, n in cut) <= max(MAX_BLOCK_ROWS, batch)
    assert cut[-1][1] <= batch  # the last blocks are one batch: no actor waits on a long last block
    for (shard, n), (next_shard, next_n) in zip(cut, cut[1:]):
        assert next_n <= n or next_shard != shard  # within a shard, blocks only shrink


def test_blocks_never_cross_a_shard_and_stay_under_the_block_limit():
    assert [n for _, n in _blocks([5, 7], 1, 1)] == [3, 2, 2, 2, 1, 1, 1]  # _blocks checks no block crosses
    assert len(list(block_plan([(0, 3 * MAX_BLOCKS)], 3 * MAX_BLOCKS, 8, 1))) <= MAX_BLOCKS


def test_timeline_and_actor_startup_per_node():
    tl = Timeline()
    tl.began = 1000.0
    tl.mark("connected", 1004.0)
    tl.mark("pipeline_started", 1005.0)
    tl.mark("first_row", 1030.0)
    tl.mark("first_row", 1031.0)  # the first mark stays
    startups = [
        ActorStartup("node-b", 12, imports_at=1006.0, import_s=3.0, model_load_s=4.0, ready_at=1013.5),
        ActorStartup("node-a", 11, imports_at=1005.5, import_s=2.5, model_load_s=3.0, ready_at=1011.0),
    ]
    per_node = actor_startup(startups, tl)
    assert per_node["node-a"] == [
        {"pid": 11, "process_s": 0.5, "import_s": 2.5, "model_load_s": 3.0, "startup_s": 6.0, "ready_s": 11.0}
    ]
    assert per_node["node-b"][0]["startup_s"] == 8.5
    assert tl.seconds() == {
        "connected": 4.0,
        "pipeline_started": 5.0,
        "first_actor_ready": 11.0,
        "all_actors_ready": 13.5,
        "first_row": 30.0,
    }


class CountingLedger(CrashLedger):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def begin_batch(self, ids):
        self.calls.append("begin_batch")
        return super().begin_batch(ids)

    def finish(self, ids):
        self.calls.append("finish")
        super().finish(ids)


def test_unread_rows_skip_the_ledger_and_actor_startup_is_recorded(tiny_model_dir):
    """Rows that could not be read never reach the model: no ledger round trip for them."""
    cfg = JobSettings(input="x", output="y", engine=EngineSettings(model=str(tiny_model_dir)))
    ledger = CountingLedger()
    labeler = Labeler(cfg, output_schema(pa.schema([("caption", pa.string())])), ledger, threads=1)
    (startup,) = ledger.actor_startups()
    # "local", or the node of a Ray an earlier test left joined in this process
    assert startup.node == _node_id() and startup.model_load_s > 0 and startup.ready_at >= startup.imports_at
    rows = labeler(_batch([("gone.jpg", None), ("also-gone.jpg", None)])).to_pylist()
    assert [r["error_kind"] for r in rows] == ["missing", "missing"]
    assert [r["caption"] for r in rows] == ["c0", "c1"] and ledger.calls == []


NOISY = r"""
import os, sys
from m2fp_batch.pipeline.raylog import quiet_ray_internals
line = b"[2026-12-04 core_worker.cc:1] Actor 12ab has constructor arguments in the object store and max_restarts > 0.\n"
with quiet_ray_internals():
    os.write(2, line)
    os.write(2, b"a real error the user must see\n")
    os.write(2, line)
    print("python stderr passes too", file=sys.stderr, flush=True)
os.write(2, b"after the block\n")
"""


def test_ray_constructor_argument_error_is_explained_once_and_other_lines_pass():
    res = subprocess.run([sys.executable, "-c", NOISY], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert res.returncode == 0, res.stderr
    err = res.stderr
    assert "has constructor arguments in the object store and max_restarts > 0." not in err
    assert err.count("m2fp-batch: Ray logs 'Actor ... has constructor arguments") == 1
    assert "a real error the user must see" in err and "python stderr passes too" in err
    assert "after the block" in err


NICENESS = r"""
import os, ray
from m2fp_batch import localray
os.environ.pop(localray.WORKER_NICENESS, None)
localray.init_local(num_cpus=1, include_dashboard=False)
print("niceness", os.nice(0), ray.get(ray.remote(lambda: os.nice(0)).remote()))
"""


@pytest.mark.cluster
def test_local_ray_workers_run_at_the_commands_priority():
    """Ray's default worker niceness (15) starved the train worker on a shared machine."""
    with tempfile.TemporaryDirectory(dir="/tmp") as ray_tmp:  # short: Ray's socket paths are bounded
        env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": ray_tmp}
        res = subprocess.run([sys.executable, "-c", NICENESS], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    driver, worker = res.stdout.split("niceness", 1)[1].split()[:2]
    assert worker == driver, res.stdout
