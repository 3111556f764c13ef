"""The labelling job: list -> read bytes -> (decode + M2FP + rows in an actor pool) -> shards.

One Ray Data pipeline streams every pending input through the stages; the driver receives the
labelled rows, groups them by shard and commits a shard (Parquet, then its stats file) as soon
as all its rows have arrived. A rerun into the same output skips finished shards; see
``docs/job.md``. The schedule (plan, pool, blocks: ``schedule``), the shard commit (``commit``)
and the progress and start-up timing (``progress``) are their own modules.
"""

from __future__ import annotations

import logging
import socket
import sys
import time

import pyarrow as pa

from m2fp_batch import localray
from m2fp_batch.inference.loading import ModelInfo
from m2fp_batch.labels.layout import RUN_FILE
from m2fp_batch.memory import release_mapped_store_pages
from m2fp_batch.pipeline import interrupt
from m2fp_batch.pipeline.commit import ShardCommitter, pipeline_schema
from m2fp_batch.pipeline.config import JobSettings, JobSettingsError
from m2fp_batch.pipeline.inputs import LISTING_COLUMNS
from m2fp_batch.pipeline.pending import listing_dataset
from m2fp_batch.pipeline.progress import Progress, Timeline, actor_startup
from m2fp_batch.pipeline.raylog import quiet_ray_internals
from m2fp_batch.pipeline.reading import read_stage
from m2fp_batch.pipeline.resume import Prepared, prepare
from m2fp_batch.pipeline.schedule import MAX_BLOCK_BYTES, Plan, Pool, pool_size, pool_strategy
from m2fp_batch.pipeline.staged import check_device, staged_stages
from m2fp_batch.pipeline.summary import RunInfo, RunSummary, summarize, utc_now
from m2fp_batch.pipeline.worker import CrashLedger, Labeler, actor_threads
from m2fp_batch.storage import Filesystems, S3Options

__all__ = ["check_address", "resolve_model", "run_job"]

log = logging.getLogger("m2fp_batch.job")

ADDRESS_TIMEOUT_S = 10.0
ACTORS_READY_TIMEOUT_S = 600  # a fixed pool: how long the job waits for every actor to start
# the driver drops its mapping of the object-store pages it has read after every this many bytes of rows
STORE_PAGES_EVERY_BYTES = 16 * 2**20


def resolve_model(cfg: JobSettings) -> ModelInfo:
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
        raise JobSettingsError(f"Ray address {address!r} is not host:port (or ray://host:port, auto)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise JobSettingsError(
            f"no Ray cluster answers at {address!r} ({e.strerror or e}); start one (ray start --head) "
            "or leave --address and RAY_ADDRESS unset for a local Ray"
        ) from e


def _init_ray(cfg: JobSettings):
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


def _start_ledger(ray):
    """The crash ledger, a job-wide actor, on the driver's own node (never soft): a lost worker
    node never takes it along, and the driver's node going means the job is gone anyway."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    log.info("crash ledger on the driver's node %s", node)
    where = NodeAffinitySchedulingStrategy(node_id=node, soft=False)
    return ray.remote(num_cpus=0, scheduling_strategy=where)(CrashLedger).remote()


def _ray_initialized() -> bool:
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def _build_dataset(
    cfg: JobSettings, model: ModelInfo, prep: Prepared, plan: Plan, pool: Pool, out_schema: pa.Schema, ledger
):
    """The Ray Data pipeline: pending rows -> read bytes (tasks) -> Labeler (actor pool)."""
    import ray.data as rd

    ctx = rd.DataContext.get_current()
    ctx.enable_progress_bars = False
    if not cfg.autoscaling and ctx.wait_for_min_actors_s <= 0:
        ctx.wait_for_min_actors_s = ACTORS_READY_TIMEOUT_S  # every actor up before the first batch
    s3 = S3Options.from_config(cfg)
    ctx.target_max_block_size = MAX_BLOCK_BYTES
    ds = listing_dataset(prep.out.uri, s3, plan, pool.actors, cfg.batch_size, prep.listing.schema)
    guards = (cfg.engine.max_bytes, cfg.engine.max_pixels)
    ds = read_stage(ds, s3, guards, cfg.sampling, cfg.read_cpus, cfg.read_concurrency)
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


def _label_pending(cfg: JobSettings, model: ModelInfo, prep: Prepared, plan: Plan, timeline: Timeline) -> RunInfo:
    """Start (or join) Ray, stream the pending rows through the pipeline, commit every shard."""
    started = time.time()
    ray = _init_ray(cfg)
    timeline.mark("connected")
    interrupt.check()
    out_schema = pipeline_schema(pa.schema([f for f in prep.listing.schema if f.name not in LISTING_COLUMNS]))
    pool = Pool(pool_size(cfg, ray), cfg.engine.threads or actor_threads(cfg.cpus_per_actor))
    size = f"{min(cfg.min_actors, pool.actors)}..{pool.actors} (autoscaling)" if cfg.autoscaling else str(pool.actors)
    log.info(
        "actor pool: %s actor(s) x %g CPU(s), torch threads %d, batch size %d",
        size, cfg.cpus_per_actor, pool.threads, cfg.batch_size,
    )  # fmt: skip
    ledger = _start_ledger(ray)
    ds = _build_dataset(cfg, model, prep, plan, pool, out_schema, ledger)
    progress = Progress(plan, cfg.progress_interval_s)
    committer = ShardCommitter(prep, plan, out_schema, cfg.compression)
    timeline.mark("pipeline_started")
    interrupt.check()
    read = 0
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        interrupt.check()  # a Ctrl-C swallowed inside Ray Data's start or wait still stops the job here
        if batch.num_rows:
            timeline.mark("first_row")
            progress.add(batch.num_rows, committer.add(batch))
            read += batch.nbytes
        if read >= STORE_PAGES_EVERY_BYTES:  # the driver's RSS stays flat however many rows it reads
            read = 0
            release_mapped_store_pages()
    interrupt.check()
    committer.check_complete()
    loads = ray.get(ledger.model_loads.remote())
    actors = actor_startup(ray.get(ledger.actor_startups.remote()), timeline)
    address = cfg.ray_address() or "local"
    return progress.run_info(started, pool, loads, address, timeline, actors, committer.seconds)


def run_job(cfg: JobSettings) -> RunSummary:
    """Run (or resume) the job; returns the summary also written to ``DIR/_run.json``. A Ctrl-C
    at any point raises ``KeyboardInterrupt`` (:mod:`m2fp_batch.pipeline.interrupt`)."""
    with interrupt.stop_on_ctrl_c():
        return _run_job(cfg)


def _run_job(cfg: JobSettings) -> RunSummary:
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
    if plan.pending_rows == 0:
        run = RunInfo(utc_now())
        log.info("nothing to do: every shard of %s is finished", cfg.output)
    else:
        with quiet_ray_internals():
            run = _label_pending(cfg, model, prep, plan, timeline)
    summary = summarize(prep, cfg, run)
    prep.out.write_json(RUN_FILE, summary.to_dict())
    if run.pipeline:
        log.info(
            "finished: %d rows of %d inputs (%s), status %s, %d labelled in %.1f s (%.2f images/s); summary in "
            "%s/_run.json",
            summary.rows, plan.total, "complete" if summary.complete else "incomplete", summary.status,
            run.labelled_this_run, run.seconds, run.images_per_s or 0.0,
            cfg.output,
        )  # fmt: skip
    return summary
