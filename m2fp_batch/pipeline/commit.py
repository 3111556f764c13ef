"""The driver's commit: labelled rows grouped by shard, a shard written (Parquet, then its stats
file) as soon as all its inputs' rows have arrived: one row for a photo, and for a video the row
count its last row carries (:mod:`~m2fp_batch.pipeline.frames`); a video's people get their
tracks here, where all its frames are together (:mod:`~m2fp_batch.pipeline.tracking`)."""

from __future__ import annotations

import collections
import logging
import time

import pyarrow as pa
import pyarrow.compute as pc

from m2fp_batch.labels.layout import shard_name, stats_name
from m2fp_batch.pipeline import interrupt
from m2fp_batch.pipeline.frames import INPUT_ROWS, VIDEO_FIELDS
from m2fp_batch.pipeline.resume import Prepared
from m2fp_batch.pipeline.schedule import Plan
from m2fp_batch.pipeline.summary import ShardStats
from m2fp_batch.pipeline.tracking import add_tracks
from m2fp_batch.schema import output_schema

__all__ = ["ShardCommitter", "pipeline_schema"]

log = logging.getLogger("m2fp_batch.job")


def pipeline_schema(passthrough: pa.Schema) -> pa.Schema:
    """The rows the pipeline hands the driver: the output schema and :data:`~.frames.INPUT_ROWS`."""
    return output_schema(passthrough).append(VIDEO_FIELDS[INPUT_ROWS])


class ShardCommitter:
    """Groups the labelled rows by shard and commits a shard (Parquet, then its stats file) as soon
    as all its rows have arrived."""

    def __init__(self, prep: Prepared, plan: Plan, out_schema: pa.Schema, compression: str) -> None:
        self.prep, self.plan, self.out_schema, self.compression = prep, plan, out_schema, compression
        self.buffers: dict[int, list[pa.Table]] = collections.defaultdict(list)
        self.got: collections.Counter = collections.Counter()  # inputs finished, by shard
        self.video_rows: collections.Counter = collections.Counter()  # (shard, video) -> rows arrived
        self.video_total: dict[tuple[int, str], int] = {}  # (shard, video) -> its row count, once known
        self.started: dict[int, float] = {}
        self.seconds = {"committing": 0.0, "writing": 0.0}  # the driver's own time, by stage

    def add(self, batch: pa.Table) -> int:
        """Take a batch of labelled rows; returns how many inputs it finished."""
        t0 = time.perf_counter()
        finished = 0
        shards = batch.column("shard")
        present = pc.unique(shards).to_pylist()
        for shard in present:
            part = batch if len(present) == 1 else batch.filter(pc.equal(shards, shard))
            self.buffers[shard].append(part)
            done = self._inputs_done(shard, part)
            self.got[shard] += done
            finished += done
            self.started.setdefault(shard, time.time())
            expected = self.plan.expected[shard]
            if self.got[shard] == expected:
                self._commit(shard)
            elif self.got[shard] > expected:
                raise RuntimeError(f"shard {shard}: got {self.got[shard]} rows for {expected} inputs")
        self.seconds["committing"] += time.perf_counter() - t0
        return finished

    def _inputs_done(self, shard: int, part: pa.Table) -> int:
        """How many inputs ``part`` (rows of ``shard``) finishes: each photo row, and each video whose
        rows have all arrived (its last row says how many)."""
        videos = part.column("video_id")
        if videos.null_count == part.num_rows:
            return part.num_rows
        done = videos.null_count
        for video, total in zip(videos.to_pylist(), part.column(INPUT_ROWS).to_pylist(), strict=True):
            if video is None:
                continue
            key = (shard, video)
            self.video_rows[key] += 1
            if total is not None:
                self.video_total[key] = total
            if self.video_rows[key] == self.video_total.get(key):
                done += 1
                del self.video_rows[key], self.video_total[key]
        return done

    def _commit(self, shard: int) -> None:
        interrupt.check()  # after a Ctrl-C no shard starts: a rerun labels it
        inputs = self.got.pop(shard)  # only the shards in flight stay
        log.info("committing shard %d (%d inputs)", shard, inputs)
        table = pa.concat_tables(self.buffers.pop(shard)).cast(self.out_schema).drop_columns([INPUT_ROWS])
        table = add_tracks(table.take(pc.sort_indices(table, [("uri", "ascending"), ("frame_index", "ascending")])))
        out = self.prep.out
        t0 = time.perf_counter()
        nbytes = out.write_table(shard_name(shard), table, self.compression)
        stats = ShardStats.of(shard, table, nbytes, time.time() - self.started.pop(shard), self.prep.job_id, inputs)
        out.write_json(stats_name(shard), stats.to_dict())
        written = time.perf_counter() - t0
        self.seconds["writing"] += written
        self.seconds["committing"] -= written  # add() counts the whole call; writing is its own stage

    def check_complete(self) -> None:
        if self.buffers:
            missing = {s: self.plan.expected[s] - self.got[s] for s in self.buffers}
            raise RuntimeError(f"the pipeline ended with incomplete shards (missing rows per shard: {missing})")
