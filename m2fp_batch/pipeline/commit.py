"""The driver's commit: labelled rows grouped by shard, a shard written (Parquet, then its stats
file) as soon as all its rows have arrived."""

from __future__ import annotations

import collections
import logging
import time

import pyarrow as pa
import pyarrow.compute as pc

from m2fp_batch.labels.layout import shard_name, stats_name
from m2fp_batch.pipeline import interrupt
from m2fp_batch.pipeline.resume import Prepared
from m2fp_batch.pipeline.schedule import Plan
from m2fp_batch.pipeline.summary import ShardStats

__all__ = ["ShardCommitter"]

log = logging.getLogger("m2fp_batch.job")


class ShardCommitter:
    """Groups the labelled rows by shard and commits a shard (Parquet, then its stats file) as soon
    as all its rows have arrived."""

    def __init__(self, prep: Prepared, plan: Plan, out_schema: pa.Schema, compression: str) -> None:
        self.prep, self.plan, self.out_schema, self.compression = prep, plan, out_schema, compression
        self.buffers: dict[int, list[pa.Table]] = collections.defaultdict(list)
        self.got: collections.Counter = collections.Counter()
        self.started: dict[int, float] = {}
        self.seconds = {"committing": 0.0, "writing": 0.0}  # the driver's own time, by stage

    def add(self, batch: pa.Table) -> None:
        t0 = time.perf_counter()
        shards = batch.column("shard")
        present = pc.unique(shards).to_pylist()
        for shard in present:
            part = batch if len(present) == 1 else batch.filter(pc.equal(shards, shard))
            self.buffers[shard].append(part)
            self.got[shard] += part.num_rows
            self.started.setdefault(shard, time.time())
            expected = self.plan.expected[shard]
            if self.got[shard] == expected:
                self._commit(shard)
            elif self.got[shard] > expected:
                raise RuntimeError(f"shard {shard}: got {self.got[shard]} rows for {expected} inputs")
        self.seconds["committing"] += time.perf_counter() - t0

    def _commit(self, shard: int) -> None:
        interrupt.check()  # after a Ctrl-C no shard starts: a rerun labels it
        log.info("committing shard %d (%d rows)", shard, self.got[shard])
        del self.got[shard]  # only the shards in flight stay
        table = pa.concat_tables(self.buffers.pop(shard)).cast(self.out_schema)
        table = table.take(pc.sort_indices(table, [("uri", "ascending")]))
        out = self.prep.out
        t0 = time.perf_counter()
        nbytes = out.write_table(shard_name(shard), table, self.compression)
        stats = ShardStats.of(shard, table, nbytes, time.time() - self.started.pop(shard), self.prep.job_id)
        out.write_json(stats_name(shard), stats.to_dict())
        written = time.perf_counter() - t0
        self.seconds["writing"] += written
        self.seconds["committing"] -= written  # add() counts the whole call; writing is its own stage

    def check_complete(self) -> None:
        if self.buffers:
            missing = {s: self.plan.expected[s] - self.got[s] for s in self.buffers}
            raise RuntimeError(f"the pipeline ended with incomplete shards (missing rows per shard: {missing})")
