"""What the job writes about itself: a shard's stats file (also its commit marker) and the run
summary ``_run.json``, as dataclasses whose ``to_dict`` is exactly the JSON written."""

from __future__ import annotations

import collections
import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from m2fp_batch.labels.layout import shard_name
from m2fp_batch.photo_to_row import PROVENANCE_COLUMNS
from m2fp_batch.pipeline.config import JobSettings
from m2fp_batch.pipeline.output import OutputDir
from m2fp_batch.pipeline.resume import Prepared
from m2fp_batch.schema import SCHEMA_NAME, SKIN_GROUPS, STATUSES

__all__ = ["PipelineInfo", "RunInfo", "RunSummary", "ShardStats", "summarize", "utc_now"]


def utc_now(t: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _true_count(column: pa.ChunkedArray) -> int:
    return int(pc.sum(pc.fill_null(column, False).cast(pa.int64())).as_py() or 0)


@dataclass(frozen=True)
class ShardStats:
    """A committed shard's stats file, also its commit marker (``layout.MARKER_FIELDS``: job_id, rows, bytes)."""

    shard: int
    job_id: str
    file: str
    rows: int
    inputs: int  # listing rows done: a photo is one row, a video one row per sampled frame (and an error)
    status: dict[str, int]
    error_kinds: dict[str, int]
    persons: int
    skin_tone_groups: dict[str, int]
    brightened: int
    bytes: int
    seconds: float
    finished_at: str

    @classmethod
    def of(cls, shard: int, table: pa.Table, nbytes: int, seconds: float, job_id: str, inputs: int) -> ShardStats:
        """The stats of ``table``, the rows of the shard's ``inputs`` inputs just written in ``nbytes`` bytes."""
        status = collections.Counter(table.column("status").to_pylist())
        kinds = collections.Counter(k for k in table.column("error_kind").to_pylist() if k)
        skin: collections.Counter = collections.Counter()
        for c in table.column("skin_tone_counts").to_pylist():
            if c:
                skin.update(c)
        return cls(
            shard=shard,
            job_id=job_id,
            file=shard_name(shard),
            rows=table.num_rows,
            inputs=inputs,
            status={s: status.get(s, 0) for s in STATUSES},
            error_kinds=dict(sorted(kinds.items())),
            persons=int(pc.sum(table.column("num_persons")).as_py() or 0),
            skin_tone_groups={g: skin.get(g, 0) for g in SKIN_GROUPS},
            brightened=_true_count(table.column("brightened")),
            bytes=nbytes,
            seconds=round(seconds, 3),
            finished_at=utc_now(),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PipelineInfo:
    """How a run that labelled something went (absent when every shard was already finished)."""

    ray_start_s: float
    first_rows_after_s: float | None
    steady_images_per_s: float | None
    actors_max: int
    torch_threads: int
    model_loads_per_node: dict[str, int]
    ray_address: str
    pid: int
    # seconds since the job began at the end of each stage of its start (see ``progress.Timeline``)
    startup: dict[str, float] = dataclasses.field(default_factory=dict)
    # per node, each actor's start-up (``job.actor_startup``): process, import, model load, ready
    actor_startup: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    # the driver's own seconds: committing (grouping rows by shard) and writing (Parquet, stats)
    driver_s: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class RunInfo:
    """This run: when it started, what it labelled, how fast."""

    started_at: str
    labelled_this_run: int = 0
    seconds: float = 0.0
    images_per_s: float | None = None
    pipeline: PipelineInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("started_at", "labelled_this_run", "seconds", "images_per_s")}
        return d | (dataclasses.asdict(self.pipeline) if self.pipeline else {})


@dataclass(frozen=True)
class RunSummary:
    """The job's summary over every finished shard, written to ``DIR/_run.json`` (``to_dict``)."""

    schema: str
    output: str | None
    inputs: int
    rows: int
    complete: bool
    shards: dict[str, int]  # total, finished
    status: dict[str, int]
    error_kinds: dict[str, int]
    persons: int
    skin_tone_groups: dict[str, int]
    brightened: int
    parquet_bytes: int
    parquet_bytes_per_image: float | None
    run: RunInfo
    config: dict[str, Any]  # every setting, secrets redacted
    config_hash: str
    job_id: str
    provenance: dict[str, Any] | None  # the first shard's provenance columns

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} | {"run": self.run.to_dict()}


@dataclass
class _Totals:
    """Counters over the committed shards' stats files, read one at a time."""

    shards: int = 0
    rows: int = 0
    inputs: int = 0
    nbytes: int = 0
    persons: int = 0
    brightened: int = 0
    status: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    kinds: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    skin: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def add(self, s: dict) -> None:
        self.shards += 1
        self.rows += s["rows"]
        self.inputs += s.get("inputs", s["rows"])  # before videos, one row per input
        self.nbytes += s["bytes"]
        self.persons += s.get("persons", 0)
        self.brightened += s.get("brightened", 0)
        self.status.update(s["status"])
        self.kinds.update(s["error_kinds"])
        self.skin.update(s.get("skin_tone_groups", {}))


def summarize(prep: Prepared, cfg: JobSettings, run: RunInfo) -> RunSummary:
    """The summary of every shard of ``prep``'s output committed by its job (this run's and earlier)."""
    out, listing = prep.out, prep.listing
    t = _Totals()
    for _, stats in out.committed_stats(prep.job_id, prep.rows_per_shard()):
        t.add(stats)
    rows, nbytes = t.rows, t.nbytes
    return RunSummary(
        schema=SCHEMA_NAME,
        output=cfg.output,
        inputs=listing.rows,
        rows=rows,
        complete=t.inputs == listing.rows,
        shards={"total": len(listing.shard_rows), "finished": t.shards},
        status={s: t.status.get(s, 0) for s in STATUSES},
        error_kinds=dict(t.kinds.most_common()),
        persons=t.persons,
        skin_tone_groups={g: t.skin.get(g, 0) for g in SKIN_GROUPS},
        brightened=t.brightened,
        parquet_bytes=nbytes,
        parquet_bytes_per_image=round(nbytes / rows, 1) if rows else None,
        run=run,
        config=cfg.to_dict(redact=True),
        config_hash=cfg.engine.label_hash(),
        job_id=prep.job_id,
        provenance=_provenance(out, min(listing.shard_rows)),
    )


def _provenance(out: OutputDir, first: int) -> dict[str, Any] | None:
    if not out.exists(shard_name(first)):
        return None
    t = out.read_table(shard_name(first)).select(list(PROVENANCE_COLUMNS)).slice(0, 1).to_pylist()
    return t[0] if t else None
