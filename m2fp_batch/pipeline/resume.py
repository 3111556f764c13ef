"""The output dir belongs to one job: its identity, the saved listing, and what is finished.

The first run writes ``_config.json`` (a new ``job_id``, the input source, the checkpoint's
sha256, the settings that shape rows) and then ``_inputs.parquet`` (the listing, stamped with
the same job id). A rerun resumes only when all of them agree; otherwise it is refused with
the difference, before anything is written. Nothing here starts Ray.

The listing never sits in the driver's memory whole: it is staged batch by batch into a local
file, copied into ``_inputs.parquet`` with its shards, and read back in batches; what stays is
the number of inputs per shard and, while a rerun looks for new inputs, 16 bytes per input.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from m2fp_batch.labels.layout import INPUTS_FILE
from m2fp_batch.pipeline.config import KEY_ALIASES, JobSettings, JobSettingsError
from m2fp_batch.pipeline.inputs import (
    INPUTS_ROW_GROUP_ROWS,
    LISTING_BATCH_ROWS,
    LISTING_COLUMNS,
    InputError,
    StagedListing,
    digests,
    stage_listing,
)
from m2fp_batch.pipeline.output import OutputDir, OutputError
from m2fp_batch.schema import SCHEMA_NAME, output_schema
from m2fp_batch.storage import Filesystems, normalize_uri
from m2fp_batch.video import VIDEO_EXTENSIONS

log = logging.getLogger("m2fp_batch.job")

JOB_ID_KEY = b"m2fp_batch.job_id"
_START_OVER = "pass --overwrite to start over, or use another --out"


@dataclass(frozen=True)
class Listing:
    """The saved listing ``_inputs.parquet`` without its rows: how many inputs, how many in each
    shard (each shard's rows are contiguous, shards in increasing order), its schema."""

    rows: int
    shard_rows: dict[int, int]
    schema: pa.Schema

    @classmethod
    def of(cls, out: OutputDir) -> Listing:
        counts: collections.Counter = collections.Counter()
        pf = out.parquet_file(INPUTS_FILE)
        for batch in pf.iter_batches(LISTING_BATCH_ROWS, columns=["shard"]):
            shards, n = np.unique(batch.column(0).to_numpy(), return_counts=True)
            counts.update(dict(zip(shards.tolist(), n.tolist())))
        return cls(pf.metadata.num_rows, dict(sorted(counts.items())), pf.schema_arrow)


@dataclass
class Prepared:
    """What the driver needs to run: the output dir, the listing, the job id, finished shards."""

    out: OutputDir
    listing: Listing
    job_id: str
    finished: set[int]  # the shards committed by this job

    def rows_per_shard(self) -> dict[int, int]:
        return self.listing.shard_rows


def _check_passthrough(schema: pa.Schema) -> None:
    try:  # passthrough names that clash with output columns
        output_schema(pa.schema([f for f in schema if f.name not in LISTING_COLUMNS]))
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


# the video settings as a job before videos (schema v4) ran: its outputs resume with the defaults
VIDEO_DEFAULTS = {f.name: f.default for f in dataclasses.fields(JobSettings) if f.name.startswith("video_")}


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
    before = VIDEO_DEFAULTS | before  # an output of a version before videos: no video was sampled
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


def _saved_listing(out: OutputDir, job_id: str) -> pq.ParquetFile | None:
    """The listing of job ``job_id``, None when it was never written; refuses a lost or foreign one."""
    if not out.exists(INPUTS_FILE):
        if out.shard_files() or out.job_files(stats_only=True):
            raise OutputError(
                f"output {out.uri!r}: _inputs.parquet (the listing that says which input is in which shard) "
                f"is missing while shards exist, so finished rows cannot be matched to inputs; {_START_OVER}"
            )
        return None
    listing = out.parquet_file(INPUTS_FILE)
    stamp = (listing.schema_arrow.metadata or {}).get(JOB_ID_KEY, b"").decode()
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


def _sharded_schema(schema: pa.Schema, job_id: str) -> pa.Schema:
    """The listing's schema with ``shard`` as its third column, stamped with the job id."""
    fields = [f for f in schema if f.name != "shard"]
    fields.insert(2, pa.field("shard", pa.int32(), nullable=False))
    return pa.schema(fields, metadata={**(schema.metadata or {}), JOB_ID_KEY: job_id.encode()})


@dataclass
class _Sharder:
    """Shard numbers in listing order: photos in runs of ``shard_size``, and each input with a video's
    name a shard of its own (its frames are many rows: the driver holds one video's rows until its
    shard commits, and a rerun redoes one video, not ``shard_size`` of them)."""

    shard_size: int
    next_shard: int  # the number the next new shard gets
    run: int = 0  # photos in the open photo shard (next_shard - 1); 0: none is open

    def assign(self, is_video: np.ndarray) -> np.ndarray:
        out = np.empty(len(is_video), np.int64)
        start = 0
        for v in [*np.flatnonzero(is_video).tolist(), len(is_video)]:
            self._photos(out, start, v)
            if v < len(is_video):
                out[v], self.next_shard, self.run = self.next_shard, self.next_shard + 1, 0
            start = v + 1
        return out

    def _photos(self, out: np.ndarray, a: int, b: int) -> None:
        """Rows ``a:b`` (photos): fill the open shard, then new shards of ``shard_size``."""
        if b <= a:
            return
        take = min(self.shard_size - self.run if self.run else 0, b - a)
        out[a : a + take] = self.next_shard - 1
        self.run += take
        rest = b - a - take
        if rest:
            out[a + take : b] = self.next_shard + np.arange(rest) // self.shard_size
            self.next_shard += -(-rest // self.shard_size)
            self.run = rest % self.shard_size or self.shard_size


_VIDEO_NAME = "(" + "|".join(e.replace(".", r"\.") for e in VIDEO_EXTENSIONS) + ")$"


def _with_shards(batches, schema: pa.Schema, shard_size: int, first_shard: int) -> Iterator[pa.RecordBatch]:
    """Each batch with ``shard`` (:class:`_Sharder`: runs of ``shard_size`` photos from ``first_shard``,
    a video on its own)."""
    sharder = _Sharder(shard_size, first_shard)
    for b in batches:
        is_video = pc.match_substring_regex(pc.utf8_lower(b.column("uri")), _VIDEO_NAME)
        shards = pa.array(sharder.assign(is_video.to_numpy(zero_copy_only=False)), pa.int32())
        arrays = [b.column("image_id"), b.column("uri"), shards] + [
            b.column(f.name) for f in schema if f.name not in LISTING_COLUMNS
        ]
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def _new_inputs(stored: pq.ParquetFile, staged: StagedListing) -> tuple[np.ndarray, int]:
    """The sorted id digests of the stored listing and how many staged inputs it lacks."""
    parts = [digests(b.column(0)) for b in stored.iter_batches(LISTING_BATCH_ROWS, columns=["image_id"])]
    known = np.sort(np.concatenate(parts))
    return known, sum(int((~_known(b, known)).sum()) for b in staged.batches())


def _known(batch: pa.RecordBatch, known: np.ndarray) -> np.ndarray:
    d = digests(batch.column("image_id"))
    at = np.minimum(np.searchsorted(known, d), len(known) - 1)
    return known[at] == d


def _extend_listing(out: OutputDir, stored: pq.ParquetFile, staged: StagedListing, shard_size: int) -> int:
    """Append the staged inputs that the stored listing lacks as new shards; returns how many.

    Raises:
        InputError: the passthrough columns changed (the outputs would not share a schema).
    """
    known, added = _new_inputs(stored, staged)
    if not added:
        return 0
    stored_rest = [f"{f.name}: {f.type}" for f in stored.schema_arrow if f.name not in LISTING_COLUMNS]
    new_rest = [f"{f.name}: {f.type}" for f in staged.schema if f.name not in LISTING_COLUMNS]
    if stored_rest != new_rest:
        raise InputError(
            f"the manifest's passthrough columns changed since the first run ({stored_rest} -> {new_rest}); "
            "one output holds one schema: use --overwrite or another output directory"
        )
    schema = stored.schema_arrow
    first = max(Listing.of(out).shard_rows) + 1
    new = (b.filter(pa.array(~_known(b, known))) for b in staged.batches())
    new = (b.cast(pa.schema([schema.field(f.name) for f in b.schema])) for b in new)
    batches = _chain(stored.iter_batches(LISTING_BATCH_ROWS), _with_shards(new, schema, shard_size, first))
    out.write_batches(INPUTS_FILE, schema, batches, row_group_rows=INPUTS_ROW_GROUP_ROWS)
    return added


def _chain(*iterables) -> Iterator[pa.RecordBatch]:
    for it in iterables:
        yield from it


def _write_listing(out: OutputDir, staged: StagedListing, shard_size: int, job_id: str) -> None:
    schema = _sharded_schema(staged.schema, job_id)
    batches = _with_shards(staged.batches(), schema, shard_size, 0)
    out.write_batches(INPUTS_FILE, schema, batches, row_group_rows=INPUTS_ROW_GROUP_ROWS)


def prepare(cfg: JobSettings, fss: Filesystems, checkpoint_sha256: str) -> Prepared:
    """Check the input and the output dir, save or extend the listing; nothing when refused."""
    out = OutputDir(cfg.output, fss)
    out.check_usable()
    with tempfile.TemporaryDirectory(prefix="m2fp_listing_") as work:
        staged = stage_listing(
            cfg.input, fss, work, cfg.uri_column, cfg.image_id_column, progress_s=cfg.progress_interval_s
        )
        _check_passthrough(staged.schema)
        job_id, stored = _claim_output(cfg, out, checkpoint_sha256)
        removed = out.remove_temporaries()
        if removed:
            log.info("removed %d unfinished temporary file(s) of an interrupted run", removed)
        if stored is None:
            _write_listing(out, staged, cfg.shard_size, job_id)
        else:
            added = _extend_listing(out, stored, staged, cfg.shard_size)
            if added:
                log.info("%d new input(s) since the first run: appended as new shards", added)
    listing = Listing.of(out)
    finished = {shard for shard, _ in out.committed_stats(job_id, listing.shard_rows)}
    return Prepared(out, listing, job_id, finished)


def _claim_output(cfg: JobSettings, out: OutputDir, checkpoint_sha256: str) -> tuple[str, pq.ParquetFile | None]:
    """The job id of ``out`` (a new job writes ``_config.json``) and its stored listing, if any."""
    if cfg.overwrite:
        log.info("--overwrite: removed %d file(s) of an earlier run in %s", out.clear(), cfg.output)
    saved = _saved_config(out)
    if saved is None:
        _refuse_foreign(out)
        job_id = uuid.uuid4().hex
        out.ensure()
        out.write_json("_config.json", _identity(cfg, checkpoint_sha256, job_id))
        return job_id, None
    check_same_job(saved, cfg, checkpoint_sha256)
    return saved["job_id"], _saved_listing(out, saved["job_id"])
