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
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from m2fp_batch import localray
from m2fp_batch.inference.loading import ModelInfo
from m2fp_batch.labels.layout import RUN_FILE, shard_name, stats_name
from m2fp_batch.pipeline.config import ConfigError, JobConfig
from m2fp_batch.pipeline.inputs import KEY_COLUMNS
from m2fp_batch.pipeline.output import OutputDir
from m2fp_batch.pipeline.resume import Prepared, prepare
from m2fp_batch.pipeline.worker import CrashLedger, Labeler, actor_threads, read_batch
from m2fp_batch.schema import SCHEMA_NAME, SKIN_GROUPS, STATUSES, output_schema
from m2fp_batch.storage import Filesystems, S3Options

log = logging.getLogger("m2fp_batch.job")

ADDRESS_TIMEOUT_S = 10.0


def resolve_model(cfg: JobConfig) -> ModelInfo:
    """Find (download or cache), parse and load the model once, in the driver, before Ray starts.

    The actors then load the same files from ``ModelInfo.model_dir`` and check the sha256
    (see ``docs/job.md``, multi-node). Raises ModelLoadError / CheckpointMismatchError.
    """
    from m2fp_batch.inference.loading import load_model

    info = load_model(cfg.model, cfg.model_revision, trust_checkpoint=cfg.trust_checkpoint).info
    log.info("model %s: %s (checkpoint sha256 %s)", cfg.model, info.model_dir, info.checkpoint_sha256[:16])
    return info


def check_address(address: str, timeout: float = ADDRESS_TIMEOUT_S) -> None:
    """Fail within ``timeout`` seconds when a Ray address (``host:port``, ``ray://``, ``http://``) does not answer."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"Ray address {address!r} is not host:port (or ray://host:port, auto)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(
            f"no Ray cluster answers at {address!r} ({e.strerror or e}); start one (ray start --head) "
            "or leave --address and RAY_ADDRESS unset for a local Ray"
        ) from e


def _blocks(pending: pa.Table, block_rows: int) -> list[pa.Table]:
    blocks = []
    shards = pending.column("shard").to_numpy()
    bounds = [0] + [i for i in range(1, len(shards)) if shards[i] != shards[i - 1]] + [len(shards)]
    for a, b in zip(bounds[:-1], bounds[1:], strict=False):
        for s in range(a, b, block_rows):
            blocks.append(pending.slice(s, min(block_rows, b - s)))
    return blocks


def _fmt_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def shard_stats(shard: int, table: pa.Table, nbytes: int, seconds: float, job_id: str) -> dict[str, Any]:
    """The shard's stats file, also its commit marker (``layout.MARKER_FIELDS``: job_id, rows, bytes)."""
    status = collections.Counter(table.column("status").to_pylist())
    kinds = collections.Counter(k for k in table.column("error_kind").to_pylist() if k)
    persons = pc.sum(table.column("num_persons")).as_py() or 0
    skin: collections.Counter = collections.Counter()
    for c in table.column("skin_tone_counts").to_pylist():
        if c:
            skin.update(c)
    return {
        "shard": shard,
        "job_id": job_id,
        "file": shard_name(shard),
        "rows": table.num_rows,
        "status": {s: status.get(s, 0) for s in STATUSES},
        "error_kinds": dict(sorted(kinds.items())),
        "persons": int(persons),
        "skin_tone_groups": {g: skin.get(g, 0) for g in SKIN_GROUPS},
        "brightened": int(pc.sum(pc.fill_null(table.column("brightened"), False).cast(pa.int64())).as_py() or 0),
        "bytes": nbytes,
        "seconds": round(seconds, 3),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def summarize(prep: Prepared, cfg: JobConfig, run: dict[str, Any]) -> dict[str, Any]:
    out, listing = prep.out, prep.listing
    stats = sorted(out.committed_stats(prep.job_id, prep.rows_per_shard()).values(), key=lambda s: s["shard"])
    status: collections.Counter = collections.Counter()
    kinds: collections.Counter = collections.Counter()
    skin: collections.Counter = collections.Counter()
    for s in stats:
        status.update(s["status"])
        kinds.update(s["error_kinds"])
        skin.update(s.get("skin_tone_groups", {}))
    rows = sum(s["rows"] for s in stats)
    nbytes = sum(s["bytes"] for s in stats)
    return {
        "schema": SCHEMA_NAME,
        "output": cfg.output,
        "inputs": listing.num_rows,
        "rows": rows,
        "complete": rows == listing.num_rows,
        "shards": {"total": len(set(listing.column("shard").to_pylist())), "finished": len(stats)},
        "status": {s: status.get(s, 0) for s in STATUSES},
        "error_kinds": dict(kinds.most_common()),
        "persons": sum(s.get("persons", 0) for s in stats),
        "skin_tone_groups": {g: skin.get(g, 0) for g in SKIN_GROUPS},
        "brightened": sum(s.get("brightened", 0) for s in stats),
        "parquet_bytes": nbytes,
        "parquet_bytes_per_image": round(nbytes / rows, 1) if rows else None,
        "run": run,
        "config": cfg.to_dict(redact=True),
        "config_hash": cfg.config_hash(),
        "job_id": prep.job_id,
        "provenance": _provenance(out, listing),
    }


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
    node_cpus = [float(n.get("Resources", {}).get("CPU", 0)) for n in nodes]
    biggest = max(node_cpus or [0.0])
    if cfg.cpus_per_actor > biggest:
        raise ConfigError(
            f"cpus_per_actor={cfg.cpus_per_actor} but the largest Ray node has {biggest:g} CPU(s): lower cpus_per_actor"
        )
    per_node = [
        int((c - cfg.read_cpus) // cfg.cpus_per_actor) if cfg.read_cpus else int(c // cfg.cpus_per_actor)
        for c in node_cpus
    ]
    fit = max(1, sum(max(0, p) for p in per_node))
    if cfg.max_actors is not None:
        return min(cfg.max_actors, fit) if cfg.read_cpus else cfg.max_actors
    return fit


def run_job(cfg: JobConfig) -> dict[str, Any]:
    """Run (or resume) the job; returns the summary also written to ``DIR/_run.json``."""
    model = resolve_model(cfg)
    if cfg.ray_address() and not _ray_initialized():
        check_address(cfg.ray_address())
    fss = Filesystems(S3Options.from_config(cfg))
    prep = prepare(cfg, fss, model.checkpoint_sha256)
    out, listing, finished = prep.out, prep.listing, set(prep.finished)
    expected = collections.Counter(listing.column("shard").to_pylist())
    total = listing.num_rows
    done_before = sum(expected[s] for s in finished)
    pending_mask = pc.invert(pc.is_in(listing.column("shard"), pa.array(sorted(finished), pa.int32())))
    pending = listing.filter(pending_mask)
    log.info(
        "%d input(s) in %d shard(s): %d shard(s) already finished, %d image(s) to label",
        total,
        len(expected),
        len(finished),
        pending.num_rows,
    )
    t_start = time.time()
    run: dict[str, Any] = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_start))}
    if pending.num_rows == 0:
        run.update(labelled_this_run=0, seconds=0.0, images_per_s=None)
        summary = summarize(prep, cfg, run)
        out.write_json(RUN_FILE, summary)
        log.info("nothing to do: every shard of %s is finished", cfg.output)
        return summary

    ray = _init_ray(cfg)
    import ray.data as rd

    passthrough = pa.schema([f for f in listing.schema if f.name not in KEY_COLUMNS])
    out_schema = output_schema(passthrough)
    actors = _pool_size(cfg, ray)
    threads = actor_threads(cfg.cpus_per_actor)
    log.info(
        "actor pool: 1..%d actor(s) x %g CPU(s), torch threads %d, batch size %d",
        actors,
        cfg.cpus_per_actor,
        threads,
        cfg.batch_size,
    )
    ctx = rd.DataContext.get_current()
    ctx.enable_progress_bars = False
    ledger = ray.remote(num_cpus=0)(CrashLedger).remote()
    settings = {
        **cfg.to_dict(redact=False),
        "config_hash": cfg.config_hash(),
        "model_dir": model.model_dir,
        "model_id": model.model_id,
        "checkpoint_sha256": model.checkpoint_sha256,
    }
    block_rows = max(cfg.batch_size, math.ceil(pending.num_rows / 20000))
    ds = rd.from_arrow(_blocks(pending, block_rows))
    ds = ds.map_batches(
        read_batch,
        fn_kwargs={"s3": S3Options.from_config(cfg), "max_bytes": cfg.max_bytes},
        batch_format="pyarrow",
        batch_size=None,
        num_cpus=cfg.read_cpus,
        compute=rd.TaskPoolStrategy(size=cfg.read_concurrency),
    )
    ds = ds.map_batches(
        Labeler,
        fn_constructor_kwargs={"settings": settings, "out_schema": out_schema, "ledger": ledger, "threads": threads},
        batch_format="pyarrow",
        batch_size=cfg.batch_size,
        num_cpus=cfg.cpus_per_actor,
        compute=rd.ActorPoolStrategy(min_size=min(cfg.min_actors, actors), max_size=actors),
    )

    buffers: dict[int, list[pa.Table]] = collections.defaultdict(list)
    got: collections.Counter = collections.Counter()
    shard_t0: dict[int, float] = {}
    labelled = 0
    last_log = t_pipe = time.time()
    first_at, first_rows = None, 0
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        if batch.num_rows == 0:
            continue
        if first_at is None:
            first_at, first_rows = time.time(), batch.num_rows
        for shard in pc.unique(batch.column("shard")).to_pylist():
            part = batch.filter(pc.equal(batch.column("shard"), shard))
            buffers[shard].append(part)
            got[shard] += part.num_rows
            shard_t0.setdefault(shard, time.time())
            if got[shard] == expected[shard]:
                table = pa.concat_tables(buffers.pop(shard)).cast(out_schema)
                table = table.take(pc.sort_indices(table, [("uri", "ascending")]))
                nbytes = out.write_table(shard_name(shard), table, cfg.compression)
                stats = shard_stats(shard, table, nbytes, time.time() - shard_t0[shard], prep.job_id)
                out.write_json(stats_name(shard), stats)
            elif got[shard] > expected[shard]:
                raise RuntimeError(f"shard {shard}: got {got[shard]} rows for {expected[shard]} inputs")
        labelled += batch.num_rows
        now = time.time()
        if now - last_log >= cfg.progress_interval_s:
            last_log = now
            rate = labelled / (now - t_pipe)
            done = done_before + labelled
            log.info(
                "progress: %d/%d images (%.1f%%), %.2f images/s, ETA %s",
                done,
                total,
                100.0 * done / total,
                rate,
                _fmt_eta((total - done) / rate if rate else float("inf")),
            )
    if buffers:
        missing = {s: expected[s] - got[s] for s in buffers}
        raise RuntimeError(f"the pipeline ended with incomplete shards (missing rows per shard: {missing})")
    t_end = time.time()
    seconds = t_end - t_start
    steady_s = t_end - first_at if first_at else 0.0
    run.update(
        labelled_this_run=labelled,
        seconds=round(seconds, 3),
        images_per_s=round(labelled / seconds, 4) if seconds else None,
        ray_start_s=round(t_pipe - t_start, 3),
        first_rows_after_s=round(first_at - t_pipe, 3) if first_at else None,
        steady_images_per_s=round((labelled - first_rows) / steady_s, 4)
        if steady_s > 0 and labelled > first_rows
        else None,
        actors_max=actors,
        torch_threads=threads,
        model_loads_per_node=ray.get(ledger.model_loads.remote()),
        ray_address=cfg.ray_address() or "local",
        pid=os.getpid(),
    )
    summary = summarize(prep, cfg, run)
    out.write_json(RUN_FILE, summary)
    log.info(
        "finished: %d/%d rows, status %s, %d labelled in %.1f s (%.2f images/s); summary in %s/_run.json",
        summary["rows"],
        total,
        summary["status"],
        labelled,
        seconds,
        labelled / seconds if seconds else 0.0,
        cfg.output,
    )
    return summary


def _provenance(out: OutputDir, listing: pa.Table) -> dict[str, Any] | None:
    first = int(pc.min(listing.column("shard")).as_py())
    if not out.exists(shard_name(first)):
        return None
    cols = ["model", "model_id", "model_revision", "checkpoint_sha256", "package_version", "config_hash"]
    t = out.read_table(shard_name(first)).select(cols).slice(0, 1).to_pylist()
    return t[0] if t else None
