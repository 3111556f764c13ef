"""The output dir belongs to one job: its identity, the saved listing, and what is finished.

The first run writes ``_config.json`` (a new ``job_id``, the input source, the checkpoint's
sha256, the settings that shape rows) and then ``_inputs.parquet`` (the listing, stamped with
the same job id). A rerun resumes only when all of them agree; otherwise it is refused with
the difference, before anything is written. Nothing here starts Ray.
"""

from __future__ import annotations

import collections
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from m2fp_batch.pipeline.config import KEY_ALIASES, JobSettings, JobSettingsError
from m2fp_batch.pipeline.inputs import LISTING_COLUMNS, InputError, assign_shards, extend_listing, list_inputs
from m2fp_batch.pipeline.output import OutputDir, OutputError
from m2fp_batch.schema import SCHEMA_NAME, output_schema
from m2fp_batch.storage import Filesystems, normalize_uri

log = logging.getLogger("m2fp_batch.job")

JOB_ID_KEY = b"m2fp_batch.job_id"
_START_OVER = "pass --overwrite to start over, or use another --out"


@dataclass
class Prepared:
    """What the driver needs to run: the output dir, the listing, the job id, finished shards."""

    out: OutputDir
    listing: pa.Table
    job_id: str
    finished: dict[int, dict]  # shard -> its committed stats

    def rows_per_shard(self) -> dict[int, int]:
        return dict(collections.Counter(self.listing.column("shard").to_pylist()))


def _check_passthrough(listing: pa.Table) -> None:
    try:  # passthrough names that clash with output columns
        output_schema(pa.schema([f for f in listing.schema if f.name not in LISTING_COLUMNS]))
    except ValueError as e:
        raise InputError(str(e)) from e


def _identity(cfg: JobSettings, checkpoint_sha256: str, job_id: str) -> dict[str, Any]:
    return {
        "schema": SCHEMA_NAME,
        "job_id": job_id,
        "input": normalize_uri(cfg.input),
        "checkpoint_sha256": checkpoint_sha256,
        "config_hash": cfg.engine.label_hash(),
        "settings": cfg.resume_settings(),
    }


def check_same_job(saved: dict[str, Any], cfg: JobSettings, checkpoint_sha256: str) -> None:
    """Refuse to resume into an output written with other settings, input or weights."""
    where = f"output {cfg.output!r}"
    if not saved.get("job_id"):
        raise OutputError(
            f"{where} has a _config.json without a job id (another tool, or an older version); {_START_OVER}"
        )
    _check_same_settings(saved, cfg, where)
    now_input = normalize_uri(cfg.input)
    if saved.get("input") != now_input:
        raise JobSettingsError(
            f"{where} holds the labels of input {saved.get('input')!r}, not {now_input!r}; "
            f"new files in the same input are appended on a rerun, another input needs --overwrite or another --output"
        )
    if saved.get("checkpoint_sha256") != checkpoint_sha256:
        raise JobSettingsError(
            f"{where} was labelled with the checkpoint sha256 {str(saved.get('checkpoint_sha256'))[:16]}..., "
            f"the model now has {checkpoint_sha256[:16]}... (weights replaced?); one output holds one checkpoint's "
            f"labels: {_START_OVER}"
        )


def _check_same_settings(saved: dict[str, Any], cfg: JobSettings, where: str) -> None:
    """The label settings (``config_hash``), decode guards and shard size must be those of the first run."""
    before = saved.get("settings")
    before = {KEY_ALIASES.get(k, k): v for k, v in before.items()} if isinstance(before, dict) else {}
    diff = {k: (before.get(k), v) for k, v in cfg.resume_settings().items() if before.get(k) != v}
    if diff:
        raise JobSettingsError(f"{where} was written with other settings {diff} (saved -> now); {_START_OVER}")
    if saved.get("config_hash") != cfg.engine.label_hash():
        raise JobSettingsError(
            f"{where} was written by an m2fp-batch version whose config_hash covers other settings, so its rows "
            f"and new ones could not be compared; {_START_OVER}"
        )


def _refuse_foreign(out: OutputDir) -> None:
    """An output without ``_config.json`` must not hold files this job would take for its own."""
    ours = out.job_files()
    if ours:
        shown = ", ".join(ours[:3]) + (" ..." if len(ours) > 3 else "")
        raise OutputError(
            f"output {out.uri!r} already holds {shown} but no _config.json of an m2fp-batch job "
            "(files of another job, or a lost _config.json): they are never taken as finished; "
            "move them away, use another --output, or pass --overwrite (it deletes them)"
        )


def _saved_listing(out: OutputDir, job_id: str) -> pa.Table | None:
    """The listing of job ``job_id``, None when it was never written; refuses a lost or foreign one."""
    if not out.exists("_inputs.parquet"):
        if out.shard_files() or out.job_files(stats_only=True):
            raise OutputError(
                f"output {out.uri!r}: _inputs.parquet (the listing that says which input is in which shard) "
                f"is missing while shards exist, so finished rows cannot be matched to inputs; {_START_OVER}"
            )
        return None
    listing = out.read_table("_inputs.parquet")
    stamp = (listing.schema.metadata or {}).get(JOB_ID_KEY, b"").decode()
    if stamp != job_id:
        raise OutputError(
            f"output {out.uri!r}: _inputs.parquet belongs to job {stamp or 'unknown'!r}, not to job {job_id!r} "
            f"of _config.json (copied from another output?); {_START_OVER}"
        )
    return listing


def _saved_config(out: OutputDir) -> dict[str, Any] | None:
    if not out.exists("_config.json"):
        return None
    try:
        saved = out.read_json("_config.json")
    except (ValueError, OSError) as e:
        raise OutputError(f"output {out.uri!r}: _config.json cannot be read ({e}); {_START_OVER}") from e
    if not isinstance(saved, dict):
        raise OutputError(f"output {out.uri!r}: _config.json is not a job's settings; {_START_OVER}")
    return saved


def _stamp(listing: pa.Table, job_id: str) -> pa.Table:
    return listing.replace_schema_metadata({**(listing.schema.metadata or {}), JOB_ID_KEY: job_id.encode()})


def prepare(cfg: JobSettings, fss: Filesystems, checkpoint_sha256: str) -> Prepared:
    """Check the input and the output dir, save or extend the listing; nothing when refused."""
    out = OutputDir(cfg.output, fss)
    out.check_usable()
    current = list_inputs(cfg.input, fss, cfg.uri_column, cfg.image_id_column)
    _check_passthrough(current)
    if cfg.overwrite:
        log.info("--overwrite: removed %d file(s) of an earlier run in %s", out.clear(), cfg.output)
    saved = _saved_config(out)
    if saved is None:
        _refuse_foreign(out)
        job_id = uuid.uuid4().hex
        out.ensure()
        out.write_json("_config.json", _identity(cfg, checkpoint_sha256, job_id))
        stored = None
    else:
        check_same_job(saved, cfg, checkpoint_sha256)
        job_id = saved["job_id"]
        stored = _saved_listing(out, job_id)
    removed = out.remove_temporaries()
    if removed:
        log.info("removed %d unfinished temporary file(s) of an interrupted run", removed)
    if stored is None:
        listing = _stamp(assign_shards(current, cfg.shard_size), job_id)
        out.write_table("_inputs.parquet", listing)
    else:
        listing, added = extend_listing(stored, current, cfg.shard_size)
        if added:
            log.info("%d new input(s) since the first run: appended as new shards", added)
            out.write_table("_inputs.parquet", _stamp(listing, job_id))
    prepared = Prepared(out, listing, job_id, {})
    prepared.finished = out.committed_stats(job_id, prepared.rows_per_shard())
    return prepared
