"""The job's schedule: what this run labels (:class:`Plan`), how many actors (:class:`Pool`,
:func:`pool_size`, :func:`pool_strategy`) and how the pending rows are cut into blocks
(:func:`block_plan`, :func:`block_rows`); see ``docs/job.md``, the job's ceiling."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from m2fp_batch.pipeline.config import JobSettings, JobSettingsError
from m2fp_batch.pipeline.resume import Prepared
from m2fp_batch.pipeline.staged import staged_pool_size

__all__ = [
    "BLOCKS_PER_ACTOR",
    "MAX_BLOCKS",
    "MAX_BLOCK_BYTES",
    "MAX_BLOCK_ROWS",
    "Plan",
    "Pool",
    "block_plan",
    "block_rows",
    "pool_size",
    "pool_strategy",
]

log = logging.getLogger("m2fp_batch.job")

# Listing rows per block (a read task of the listing); fewer where the guided schedule balances the end
MAX_BLOCK_ROWS = 1024
# Ray Data joins the blocks one task yields up to its target_max_block_size (128 MiB by default):
# the job's blocks of read photos (and of output rows) are cut at this size, so a read task never
# holds a whole run of the listing's photos and a block of photos is a small share of the work
MAX_BLOCK_BYTES = 16 * 2**20
BLOCKS_PER_ACTOR = 4
MAX_BLOCKS = 5000


@dataclass(frozen=True)
class Plan:
    """What this run labels, without the rows themselves: the listing's rows per shard (each
    shard's rows are contiguous in ``_inputs.parquet``, shards in order), the shards still to
    label, their rows, the rows already done."""

    expected: dict[int, int]
    pending_shards: tuple[int, ...]
    pending_rows: int
    done_before: int
    total: int

    @classmethod
    def of(cls, prep: Prepared) -> Plan:
        expected, finished = prep.listing.shard_rows, prep.finished
        pending = tuple(s for s in expected if s not in finished)
        pending_rows = sum(expected[s] for s in pending)
        log.info(
            "%d input(s) in %d shard(s): %d shard(s) already finished, %d image(s) to label",
            prep.listing.rows, len(expected), len(finished), pending_rows,
        )  # fmt: skip
        return cls(expected, pending, pending_rows, prep.listing.rows - pending_rows, prep.listing.rows)

    def spans(self) -> Iterator[tuple[int, int, int]]:
        """(shard, first row in ``_inputs.parquet``, rows) of each pending shard, in order."""
        start, pending = 0, frozenset(self.pending_shards)
        for shard, rows in self.expected.items():
            if shard in pending:
                yield shard, start, rows
            start += rows


@dataclass(frozen=True)
class Pool:
    """The labelling actors: at most ``actors``, each with ``threads`` torch threads."""

    actors: int
    threads: int


def pool_size(cfg: JobSettings, ray) -> int:
    """How many labelling actors the live Ray nodes fit (``max_actors`` caps a fixed pool)."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if cfg.is_staged:  # device actors beside the staged pipeline's CPU tasks, by GPUs on a GPU cluster
        return staged_pool_size(cfg, nodes)
    node_cpus = [float(n.get("Resources", {}).get("CPU", 0)) for n in nodes]
    biggest = max(node_cpus or [0.0])
    if cfg.cpus_per_actor > biggest:
        raise JobSettingsError(
            f"cpus_per_actor={cfg.cpus_per_actor} but the largest Ray node has {biggest:g} CPU(s): lower cpus_per_actor"
        )
    per_node = [
        int((c - cfg.read_cpus) // cfg.cpus_per_actor) if cfg.read_cpus else int(c // cfg.cpus_per_actor)
        for c in node_cpus
    ]
    fit = max(1, sum(max(0, p) for p in per_node))
    if cfg.max_actors is None:
        return fit
    # a fixed pool starts all its actors at once: never more than fit (an autoscaling cluster grows)
    return cfg.max_actors if cfg.autoscaling and not cfg.read_cpus else min(cfg.max_actors, fit)


def pool_strategy(cfg: JobSettings, actors: int):
    """A fixed pool of every actor the cluster fits (Ray's advice for fixed clusters: no actor
    waits for a backlog to start); with ``autoscaling``, ``min_actors`` up to that size. Reads
    take ``read_cpus`` (0 by default), so a full pool never starves them (2-CPU deadlock)."""
    import ray.data as rd

    if cfg.autoscaling:
        return rd.ActorPoolStrategy(min_size=min(cfg.min_actors, actors), max_size=actors)
    return rd.ActorPoolStrategy(size=actors)


def block_rows(left: int, actors: int, batch_size: int) -> int:
    """Rows of the next block (one read task, one actor call that labels them ``batch_size`` at a
    time) when ``left`` rows are still to be cut.

    Large blocks keep the per-block overhead (a read task, an actor call, a driver batch) off the
    job's ceiling: at most :data:`MAX_BLOCK_ROWS`. A block is at most a
    1/:data:`BLOCKS_PER_ACTOR` share of one actor's part of what is left, so blocks shrink toward
    the end down to one batch, and no actor waits long for the last one to finish; never under
    ``batch_size``, and :func:`block_plan` keeps the job under :data:`MAX_BLOCKS` blocks
    (docs/job.md, the job's ceiling)."""
    balanced = math.ceil(left / (BLOCKS_PER_ACTOR * max(1, actors)))
    return max(batch_size, min(MAX_BLOCK_ROWS, balanced))


def block_plan(shard_rows: Iterable[tuple[int, int]], total: int, actors: int, batch_size: int) -> Iterator[int]:
    """The sizes of the blocks that cut ``total`` pending rows, given as ``(shard, rows)`` runs in
    order, never across a shard: a guided schedule whose block sizes (:func:`block_rows` of the
    rows still left) shrink toward the end of the job. A generator: nothing per row is held."""
    floor = math.ceil(total / MAX_BLOCKS)
    s = 0
    for _, n in shard_rows:
        end = s + n
        while s < end:
            rows = min(end - s, max(floor, block_rows(total - s, actors, batch_size)))
            yield rows
            s += rows
