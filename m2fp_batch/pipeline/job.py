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
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from m2fp_batch.pipeline.config import ConfigError, JobConfig
from m2fp_batch.pipeline.inputs import KEY_COLUMNS, InputError, assign_shards, extend_listing, list_inputs
from m2fp_batch.pipeline.output import OutputDir, shard_name, stats_name
from m2fp_batch.pipeline.storage import Filesystems, S3Options
from m2fp_batch.pipeline.worker import CrashLedger, Labeler, actor_threads, read_batch
from m2fp_batch.schema import SCHEMA_NAME, SKIN_GROUPS, STATUSES, output_schema

log = logging.getLogger("m2fp_batch.job")


def check_model(model: str) -> None:
    """Fail before Ray starts when a local model dir is plainly wrong."""
    from m2fp_batch.inference.loading import looks_like_model_id

    if looks_like_model_id(model):
        return
    p = Path(model).expanduser()
    if not p.is_dir():
        raise ConfigError(f"model {model!r}: no such directory (and not a ModelScope id owner/name)")
    if not (p / "configuration.json").is_file():
        raise ConfigError(f"model dir {model!r} has no configuration.json")


def prepare(cfg: JobConfig, fss: Filesystems) -> tuple[OutputDir, pa.Table, set[int]]:
    """Output dir, listing (saved on the first run) and finished shards; no Ray."""
    out = OutputDir(cfg.output, fss)
    out.ensure()
    if cfg.overwrite:
        n = out.clear()
        log.info("--overwrite: removed %d file(s) of an earlier run in %s", n, cfg.output)
    removed = out.remove_temporaries()
    if removed:
        log.info("removed %d unfinished temporary file(s) of an interrupted run", removed)
    current = list_inputs(cfg.input, fss, cfg.uri_column, cfg.image_id_column)
    if out.exists("_config.json"):
        saved = out.read_json("_config.json")
        if saved.get("config_hash") != cfg.config_hash():
            diff = {
                k: (saved.get("settings", {}).get(k), v)
                for k, v in cfg.result_dict().items()
                if saved.get("settings", {}).get(k) != v
            }
            raise ConfigError(
                f"output {cfg.output!r} was written with other settings {diff} (saved -> now); "
                "pass --overwrite to start over, or use another --output"
            )
    if out.exists("_inputs.parquet") and out.exists("_config.json"):
        stored = out.read_table("_inputs.parquet")
        listing, added = extend_listing(stored, current, cfg.shard_size)
        if added:
            log.info("%d new input(s) since the first run: appended as new shards", added)
            out.write_table("_inputs.parquet", listing)
    else:
        listing = assign_shards(current, cfg.shard_size)
        try:  # passthrough names that clash with output columns
            output_schema(pa.schema([f for f in listing.schema if f.name not in KEY_COLUMNS]))
        except ValueError as e:
            raise InputError(str(e)) from e
        out.write_table("_inputs.parquet", listing)
        out.write_json(
            "_config.json", {"schema": SCHEMA_NAME, "config_hash": cfg.config_hash(), "settings": cfg.result_dict()}
        )
    finished = out.finished_shards()
    return out, listing, finished


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


def shard_stats(shard: int, table: pa.Table, nbytes: int, seconds: float) -> dict[str, Any]:
    status = collections.Counter(table.column("status").to_pylist())
    kinds = collections.Counter(k for k in table.column("error_kind").to_pylist() if k)
    persons = pc.sum(table.column("num_persons")).as_py() or 0
    skin: collections.Counter = collections.Counter()
    for c in table.column("skin_tone_counts").to_pylist():
        if c:
            skin.update(c)
    return {
        "shard": shard,
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


def summarize(out: OutputDir, listing: pa.Table, cfg: JobConfig, run: dict[str, Any]) -> dict[str, Any]:
    stats = out.all_stats()
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
        ray.init(address="local", num_cpus=cfg.num_cpus, include_dashboard=False)
    return ray


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
    check_model(cfg.model)
    fss = Filesystems(S3Options.from_config(cfg))
    out, listing, finished = prepare(cfg, fss)
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
        summary = summarize(out, listing, cfg, run)
        out.write_json("_run.json", summary)
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
    settings = {**cfg.to_dict(redact=False), "config_hash": cfg.config_hash()}
    block_rows = max(cfg.batch_size, math.ceil(pending.num_rows / 20000))
    ds = rd.from_arrow(_blocks(pending, block_rows))
    ds = ds.map_batches(
        read_batch,
        fn_kwargs={"s3": S3Options.from_config(cfg)},
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
                out.write_json(stats_name(shard), shard_stats(shard, table, nbytes, time.time() - shard_t0[shard]))
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
    summary = summarize(out, listing, cfg, run)
    out.write_json("_run.json", summary)
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
