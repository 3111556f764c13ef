"""The labelling job: list -> read bytes -> (decode + M2FP + rows in an actor pool) -> shards.

One Ray Data pipeline streams every pending input through the stages; the driver receives the
labelled rows, groups them by shard and commits a shard (Parquet, then its stats file) as soon
as all its rows have arrived. A rerun into the same output skips finished shards; see
``docs/job.md``.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import socket
import sys
import time
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from m2fp_batch import localray
from m2fp_batch.inference.loading import ModelInfo
from m2fp_batch.labels.layout import RUN_FILE, shard_name, stats_name
from m2fp_batch.pipeline.config import JobConfig, JobConfigError
from m2fp_batch.pipeline.inputs import LISTING_COLUMNS
from m2fp_batch.pipeline.raylog import quiet_ray_internals
from m2fp_batch.pipeline.reading import read_batch
from m2fp_batch.pipeline.resume import Prepared, prepare
from m2fp_batch.pipeline.staged import check_device, staged_pool_size, staged_stages
from m2fp_batch.pipeline.summary import PipelineInfo, RunInfo, RunSummary, ShardStats, summarize, utc_now
from m2fp_batch.pipeline.worker import ActorStartup, CrashLedger, Labeler, actor_threads
from m2fp_batch.schema import output_schema
from m2fp_batch.storage import Filesystems, S3Options

log = logging.getLogger("m2fp_batch.job")

ADDRESS_TIMEOUT_S = 10.0
ACTORS_READY_TIMEOUT_S = 600  # a fixed pool: how long the job waits for every actor to start
MAX_BLOCK_ROWS = 128  # also bounds a block's bytes in the object store (128 photos)
BLOCKS_PER_ACTOR = 4
MAX_BLOCKS = 20000


def resolve_model(cfg: JobConfig) -> ModelInfo:
    """Find (download or cache), parse and load the model once, in the driver, before Ray starts.

    The actors then load the same files from ``ModelInfo.model_dir`` and check the sha256
    (see ``docs/job.md``, multi-node). Raises ModelLoadError / CheckpointMismatchError.
    """
    from m2fp_batch.inference.loading import load_model

    engine = cfg.engine
    info = load_model(engine.model, engine.revision, trust_checkpoint=engine.trust_checkpoint).info
    log.info("model %s: %s (checkpoint sha256 %s)", engine.model, info.model_dir, info.checkpoint_sha256[:16])
    return info


def check_address(address: str, timeout: float = ADDRESS_TIMEOUT_S) -> None:
    """Fail within ``timeout`` seconds when a Ray address (``host:port``, ``ray://``, ``http://``) does not answer."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise JobConfigError(f"Ray address {address!r} is not host:port (or ray://host:port, auto)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise JobConfigError(
            f"no Ray cluster answers at {address!r} ({e.strerror or e}); start one (ray start --head) "
            "or leave --address and RAY_ADDRESS unset for a local Ray"
        ) from e


def _blocks(pending: pa.Table, actors: int, batch_size: int) -> list[pa.Table]:
    """The pending rows cut into blocks in order, never across a shard: a guided schedule whose
    block sizes (:func:`block_rows` of the rows still left) shrink toward the end of the job."""
    shards = pending.column("shard").to_numpy()
    ends = [i for i in range(1, len(shards)) if shards[i] != shards[i - 1]] + [len(shards)]
    floor = math.ceil(len(shards) / MAX_BLOCKS)
    blocks, s = [], 0
    for end in ends:
        while s < end:
            rows = min(end - s, max(floor, block_rows(len(shards) - s, actors, batch_size)))
            blocks.append(pending.slice(s, rows))
            s += rows
    return blocks


def _fmt_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _init_ray(cfg: JobConfig):
    import ray

    address = cfg.ray_address()
    if ray.is_initialized():
        log.info("using the Ray this process already joined")
    elif address:
        log.info("joining the Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=True)
    else:
        log.info("starting a local Ray (num_cpus=%s)", cfg.num_cpus or "all")
        localray.init_local(num_cpus=cfg.num_cpus, include_dashboard=False)  # ends with this driver
    return ray


def _ray_initialized() -> bool:
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def _pool_size(cfg: JobConfig, ray) -> int:
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if cfg.is_staged:
        return staged_pool_size(cfg, nodes)
    node_cpus = [float(n.get("Resources", {}).get("CPU", 0)) for n in nodes]
    biggest = max(node_cpus or [0.0])
    if cfg.cpus_per_actor > biggest:
        raise JobConfigError(
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


@dataclass(frozen=True)
class Plan:
    """What this run labels: the listing's rows per shard, the pending rows, the rows already done."""

    expected: collections.Counter
    pending: pa.Table
    done_before: int
    total: int

    @classmethod
    def of(cls, prep: Prepared) -> Plan:
        listing, finished = prep.listing, set(prep.finished)
        expected = collections.Counter(listing.column("shard").to_pylist())
        pending_mask = pc.invert(pc.is_in(listing.column("shard"), pa.array(sorted(finished), pa.int32())))
        pending = listing.filter(pending_mask)
        log.info(
            "%d input(s) in %d shard(s): %d shard(s) already finished, %d image(s) to label",
            listing.num_rows, len(expected), len(finished), pending.num_rows,
        )  # fmt: skip
        return cls(expected, pending, sum(expected[s] for s in finished), listing.num_rows)


@dataclass(frozen=True)
class Pool:
    """The labelling actors: at most ``actors``, each with ``threads`` torch threads."""

    actors: int
    threads: int


def _build_dataset(cfg: JobConfig, model: ModelInfo, plan: Plan, pool: Pool, out_schema: pa.Schema, ledger):
    """The Ray Data pipeline: pending rows -> read bytes (tasks) -> Labeler (actor pool)."""
    import ray.data as rd

    ctx = rd.DataContext.get_current()
    ctx.enable_progress_bars = False
    if not cfg.autoscaling and ctx.wait_for_min_actors_s <= 0:
        ctx.wait_for_min_actors_s = ACTORS_READY_TIMEOUT_S  # every actor up before the first batch
    ds = rd.from_arrow(_blocks(plan.pending, pool.actors, cfg.batch_size))
    ds = ds.map_batches(
        read_batch,
        fn_kwargs={"s3": S3Options.from_config(cfg), "max_bytes": cfg.engine.max_bytes},
        batch_format="pyarrow",
        batch_size=None,
        num_cpus=cfg.read_cpus,
        compute=rd.TaskPoolStrategy(size=cfg.read_concurrency),
    )
    if cfg.is_staged:
        return staged_stages(ds, cfg, model, pool.threads, pool_strategy(cfg, pool.actors), out_schema, ledger)
    labeler_kwargs = {"cfg": cfg, "out_schema": out_schema, "ledger": ledger, "threads": pool.threads, "model": model}
    return ds.map_batches(
        Labeler,
        fn_constructor_kwargs=labeler_kwargs,
        batch_format="pyarrow",
        batch_size=None,  # a whole block per call: the Labeler groups its rows by batch_size itself
        num_cpus=cfg.cpus_per_actor,
        compute=pool_strategy(cfg, pool.actors),
    )


def pool_strategy(cfg: JobConfig, actors: int):
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
    ``batch_size``, and :func:`_blocks` keeps the job under :data:`MAX_BLOCKS` blocks
    (docs/job.md, the job's ceiling)."""
    balanced = math.ceil(left / (BLOCKS_PER_ACTOR * max(1, actors)))
    return max(batch_size, min(MAX_BLOCK_ROWS, balanced))


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
        table = pa.concat_tables(self.buffers.pop(shard)).cast(self.out_schema)
        table = table.take(pc.sort_indices(table, [("uri", "ascending")]))
        out = self.prep.out
        t0 = time.perf_counter()
        nbytes = out.write_table(shard_name(shard), table, self.compression)
        stats = ShardStats.of(shard, table, nbytes, time.time() - self.started[shard], self.prep.job_id)
        out.write_json(stats_name(shard), stats.to_dict())
        written = time.perf_counter() - t0
        self.seconds["writing"] += written
        self.seconds["committing"] -= written  # add() counts the whole call; writing is its own stage

    def check_complete(self) -> None:
        if self.buffers:
            missing = {s: self.plan.expected[s] - self.got[s] for s in self.buffers}
            raise RuntimeError(f"the pipeline ended with incomplete shards (missing rows per shard: {missing})")


class Progress:
    """Counts labelled rows and logs progress every ``interval`` seconds."""

    def __init__(self, plan: Plan, interval: float) -> None:
        self.plan, self.interval = plan, interval
        self.labelled = 0
        self.t_pipe = self.last_log = time.time()
        self.first_at: float | None = None
        self.first_rows = 0

    def add(self, rows: int) -> None:
        if self.first_at is None:
            self.first_at, self.first_rows = time.time(), rows
        self.labelled += rows
        now = time.time()
        if now - self.last_log < self.interval:
            return
        self.last_log = now
        rate = self.labelled / (now - self.t_pipe)
        done, total = self.plan.done_before + self.labelled, self.plan.total
        eta = _fmt_eta((total - done) / rate if rate else float("inf"))
        log.info("progress: %d/%d images (%.1f%%), %.2f images/s, ETA %s", done, total, 100.0 * done / total, rate, eta)

    def run_info(
        self,
        started: float,
        pool: Pool,
        loads: dict[str, int],
        address: str,
        timeline: Timeline,
        actors: dict,
        driver_s: dict[str, float],
    ) -> RunInfo:
        end = time.time()
        seconds, n, first_at = end - started, self.labelled, self.first_at
        steady_s = end - first_at if first_at else 0.0
        steady = n > self.first_rows and steady_s > 0
        pipeline = PipelineInfo(
            ray_start_s=round(self.t_pipe - started, 3),
            first_rows_after_s=round(first_at - self.t_pipe, 3) if first_at else None,
            steady_images_per_s=round((n - self.first_rows) / steady_s, 4) if steady else None,
            actors_max=pool.actors,
            torch_threads=pool.threads,
            model_loads_per_node=loads,
            ray_address=address,
            pid=os.getpid(),
            startup=timeline.seconds(),
            actor_startup=actors,
            driver_s={k: round(v, 3) for k, v in driver_s.items()},
        )
        rate = round(n / seconds, 4) if seconds else None
        return RunInfo(utc_now(started), n, round(seconds, 3), rate, pipeline)


class Timeline:
    """When each stage of the job's start ended, in seconds since the job began (``_run.json``'s
    ``run.startup``): ``model_resolved``, ``listed``, ``planned``, ``connected`` (Ray),
    ``pipeline_started``, ``first_actor_ready``, ``all_actors_ready``, ``first_row``."""

    def __init__(self) -> None:
        self.began = time.time()
        self.at: dict[str, float] = {}

    def mark(self, stage: str, when: float | None = None) -> None:
        self.at.setdefault(stage, time.time() if when is None else when)

    def seconds(self) -> dict[str, float]:
        return {k: round(v - self.began, 3) for k, v in sorted(self.at.items(), key=lambda kv: kv[1])}


def actor_startup(startups: list[ActorStartup], timeline: Timeline) -> dict[str, list[dict]]:
    """Per node, each actor's start-up in seconds: ``process_s`` (from the pipeline's start until
    the actor's process begins importing the job's code: scheduling and process start),
    ``import_s`` (the job's code, torch, the engine), ``model_load_s`` (sha256 check included),
    ``startup_s`` (their total) and ``ready_s`` (since the job began)."""
    base = timeline.at.get("pipeline_started", timeline.began)
    per_node: dict[str, list[dict]] = collections.defaultdict(list)
    for s in sorted(startups, key=lambda s: s.ready_at):
        per_node[s.node].append({
            "pid": s.pid,
            "process_s": round(s.imports_at - base, 3),
            "import_s": round(s.import_s, 3),
            "model_load_s": round(s.model_load_s, 3),
            "startup_s": round(s.ready_at - base, 3),
            "ready_s": round(s.ready_at - timeline.began, 3),
        })  # fmt: skip
    if startups:
        timeline.mark("first_actor_ready", min(s.ready_at for s in startups))
        timeline.mark("all_actors_ready", max(s.ready_at for s in startups))
    return dict(per_node)


def _label_pending(cfg: JobConfig, model: ModelInfo, prep: Prepared, plan: Plan, timeline: Timeline) -> RunInfo:
    """Start (or join) Ray, stream the pending rows through the pipeline, commit every shard."""
    started = time.time()
    ray = _init_ray(cfg)
    timeline.mark("connected")
    out_schema = output_schema(pa.schema([f for f in prep.listing.schema if f.name not in LISTING_COLUMNS]))
    pool = Pool(_pool_size(cfg, ray), cfg.engine.threads or actor_threads(cfg.cpus_per_actor))
    size = f"{min(cfg.min_actors, pool.actors)}..{pool.actors} (autoscaling)" if cfg.autoscaling else str(pool.actors)
    log.info(
        "actor pool: %s actor(s) x %g CPU(s), torch threads %d, batch size %d",
        size, cfg.cpus_per_actor, pool.threads, cfg.batch_size,
    )  # fmt: skip
    ledger = ray.remote(num_cpus=0)(CrashLedger).remote()
    ds = _build_dataset(cfg, model, plan, pool, out_schema, ledger)
    progress = Progress(plan, cfg.progress_interval_s)
    committer = ShardCommitter(prep, plan, out_schema, cfg.compression)
    timeline.mark("pipeline_started")
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        if batch.num_rows:
            timeline.mark("first_row")
            committer.add(batch)
            progress.add(batch.num_rows)
    committer.check_complete()
    loads = ray.get(ledger.model_loads.remote())
    actors = actor_startup(ray.get(ledger.actor_startups.remote()), timeline)
    address = cfg.ray_address() or "local"
    return progress.run_info(started, pool, loads, address, timeline, actors, committer.seconds)


def run_job(cfg: JobConfig) -> RunSummary:
    """Run (or resume) the job; returns the summary also written to ``DIR/_run.json``."""
    timeline = Timeline()
    check_device(cfg)
    model = resolve_model(cfg)
    timeline.mark("model_resolved")
    if cfg.ray_address() and not _ray_initialized():
        check_address(cfg.ray_address())
    prep = prepare(cfg, Filesystems(S3Options.from_config(cfg)), model.checkpoint_sha256)
    timeline.mark("listed")
    plan = Plan.of(prep)
    timeline.mark("planned")
    if plan.pending.num_rows == 0:
        run = RunInfo(utc_now())
        log.info("nothing to do: every shard of %s is finished", cfg.output)
    else:
        with quiet_ray_internals():
            run = _label_pending(cfg, model, prep, plan, timeline)
    summary = summarize(prep, cfg, run)
    prep.out.write_json(RUN_FILE, summary.to_dict())
    if run.pipeline:
        log.info(
            "finished: %d/%d rows, status %s, %d labelled in %.1f s (%.2f images/s); summary in %s/_run.json",
            summary.rows, plan.total, summary.status, run.labelled_this_run, run.seconds, run.images_per_s or 0.0,
            cfg.output,
        )  # fmt: skip
    return summary
