"""The pipeline's labelling stage as plain Python: labelling (Ray actors, after the read tasks
of :mod:`m2fp_batch.pipeline.reading`) and the crash ledger (a small Ray actor that remembers
which images were in flight when a worker died). Rows never raise: every per-image failure
becomes an ``error`` row."""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from m2fp_batch.photo_to_row import Decoded, PhotoToRow
from m2fp_batch.pipeline.config import JobSettings
from m2fp_batch.pipeline.inputs import LISTING_COLUMNS, READ_COLUMNS
from m2fp_batch.rows import error_columns
from m2fp_batch.schema import SCHEMA, VIDEO_COLUMNS
from m2fp_batch.settings import EngineSettings

if TYPE_CHECKING:
    from m2fp_batch.inference.loading import ModelInfo

log = logging.getLogger(__name__)

LEDGER_TIMEOUT_S = 120.0  # a ledger call that takes longer counts as unreachable (the block goes on)


@dataclass(frozen=True)
class ActorStartup:
    """One labelling actor's start-up: wall-clock times (Unix seconds) and its stages' seconds.

    ``imports_at``: the process began importing the job's code (Ray unpickling the class; the
    process exists); ``import_s``: from then until torch and the engine are imported;
    ``model_load_s``: building the network and loading the weights, sha256 check included;
    ``ready_at``: the actor can take its first batch.
    """

    node: str
    pid: int
    imports_at: float
    import_s: float
    model_load_s: float
    ready_at: float


class CrashLedger:
    """Counts, per image, the labelling attempts that never finished (their worker died).

    Lives in one Ray actor per job (no CPU). A batch whose images have no unfinished attempt
    runs as a batch; otherwise its images run one by one, and an image with
    ``max_crashes`` unfinished attempts becomes an error row instead of running again.
    """

    def __init__(self) -> None:
        self.unfinished: dict[str, int] = {}
        self.loads: dict[str, int] = {}
        self.startups: list[ActorStartup] = []

    def model_loaded(self, node: str, startup: ActorStartup | None = None) -> None:
        """An actor on ``node`` (a Ray node id) loaded the model (``startup``: how long it took)."""
        self.loads[node] = self.loads.get(node, 0) + 1
        if startup is not None:
            self.startups.append(startup)

    def model_loads(self) -> dict[str, int]:
        """Model loads per node."""
        return dict(self.loads)

    def actor_startups(self) -> list[ActorStartup]:
        """Every actor start-up so far, in the order they finished."""
        return list(self.startups)

    def begin_batch(self, ids: list[str]) -> list[int]:
        """If no id has an unfinished attempt, mark all started and return zeros; else return the counts."""
        counts = [self.unfinished.get(i, 0) for i in ids]
        if not any(counts):
            for i in ids:
                self.unfinished[i] = 1
        return counts

    def begin_one(self, image_id: str) -> int:
        """Mark one image started; return its unfinished attempts before this one."""
        n = self.unfinished.get(image_id, 0)
        self.unfinished[image_id] = n + 1
        return n

    def finish(self, ids: list[str]) -> None:
        for i in ids:
            self.unfinished.pop(i, None)

    def size(self) -> int:
        return len(self.unfinished)


def _model_location(settings: EngineSettings, model: ModelInfo | None) -> str:
    """Where an actor loads the model: the driver's resolved dir when this node sees it, else the
    ModelScope id (the same revision, downloaded into this node's cache; the sha256 is checked)."""
    if model is not None and model.model_dir and os.path.isdir(model.model_dir):
        return model.model_dir
    return (model.model_id if model is not None else None) or settings.model


class LedgerRuns(ABC):
    """Work on read rows under the crash ledger: a group whose images have no unfinished attempt
    runs as a group, else image by image, and an image with ``max_worker_crashes`` unfinished
    attempts becomes its ``_crashed`` item instead of running again. Subclasses give ``cfg``,
    ``ledger``, ``_label_rows`` (rows -> items) and ``_crashed`` (a row, its attempts -> item)."""

    cfg: JobSettings
    ledger: object

    @abstractmethod
    def _label_rows(self, rows: list[dict]) -> list:
        """Rows -> their items (output rows, or what the next stage takes), in order."""

    @abstractmethod
    def _crashed(self, row: dict, attempts: int):
        """The item of a row whose image killed the worker ``attempts`` times."""

    # -- ledger calls (no-ops without a ledger)
    def _call(self, method: str, *args):
        """Call the ledger: a Ray actor handle, or a plain :class:`CrashLedger` in-process.

        A ledger that cannot be reached (its node lost, the call timed out) never fails a block:
        the call returns None, so the block goes on unrecorded (labelled as a batch); a lost
        ledger is not called again by this actor."""
        if self.ledger is None:
            return None
        fn = getattr(self.ledger, method)
        if not hasattr(fn, "remote"):
            return fn(*args)
        import ray

        try:
            return ray.get(fn.remote(*args), timeout=LEDGER_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            log.warning("the crash ledger did not answer in %g s: this block goes on unrecorded", LEDGER_TIMEOUT_S)
        except ray.exceptions.RayActorError as e:  # ActorDiedError, ActorUnavailableError: gone for good
            log.warning("the crash ledger is lost (%s): this actor's blocks go on unrecorded", type(e).__name__)
            self.ledger = None
        return None

    def _label_one_by_one(self, rows: list[dict]) -> list[dict]:
        """After a worker crash: each image alone, and one with ``max_worker_crashes`` unfinished
        attempts becomes an error row instead of running again."""
        out = []
        for r in rows:
            n = self._call("begin_one", r["image_id"])
            out.extend([self._crashed(r, n)] if n >= self.cfg.max_worker_crashes else self._label_rows([r]))
            self._call("finish", [r["image_id"]])
        return out

    def _label_with_ledger(self, rows: list[dict]) -> list[dict]:
        """Rows whose bytes were read: the ledger knows they are in flight until they are labelled."""
        ids = [r["image_id"] for r in rows]
        counts = self._call("begin_batch", ids) or [0] * len(ids)
        if any(counts):
            return self._label_one_by_one(rows)
        out = self._label_rows(rows)
        self._call("finish", ids)
        return out


class Labeler(LedgerRuns):
    """The job's labelling stage (a Ray actor): the labelling core on a batch of read rows, with the
    crash ledger's bookkeeping. The model loads once, in ``__init__``.

    Args:
        cfg: the job's settings.
        out_schema: the full output schema (``schema.output_schema`` with passthrough columns).
        ledger: a :class:`CrashLedger` actor handle, or None (no crash bookkeeping).
        threads: torch threads (the actor's CPUs) unless ``cfg.engine.threads`` says otherwise.
        model: what the driver resolved (``resolve_model``): where to load from and the sha256 every
            node must find; None loads ``cfg.engine.model`` unchecked.
    """

    def __init__(
        self, cfg: JobSettings, out_schema: pa.Schema, ledger, threads: int, model: ModelInfo | None = None
    ) -> None:
        self.cfg = cfg
        self.out_schema = out_schema
        self.ledger = ledger
        import torch  # noqa: F401  (timed apart from the model load)

        import m2fp_batch.inference  # noqa: F401
        from m2fp_batch.pipeline import IMPORTED_AT

        imported_at, t1 = time.time(), time.perf_counter()
        self.core = PhotoToRow.load(
            cfg.engine,
            threads=cfg.engine.threads or max(1, int(threads)),
            max_batch=cfg.forward_batch,
            location=_model_location(cfg.engine, model),
        )
        t2 = time.perf_counter()
        startup = ActorStartup(_node_id(), os.getpid(), IMPORTED_AT, imported_at - IMPORTED_AT, t2 - t1, time.time())
        self._call("model_loaded", startup.node, startup)
        info = self.core.parser.info
        if info and model is not None and info.checkpoint_sha256 != model.checkpoint_sha256:
            raise RuntimeError(
                f"this node loaded checkpoint sha256 {info.checkpoint_sha256[:16]}... from {info.model_dir}, "
                f"the driver resolved {model.checkpoint_sha256[:16]}...: the model differs between nodes"
            )

    def _decode(self, row: dict) -> Decoded:
        if row["read_error"] is not None:
            return Decoded(None, error_columns(row["read_error_kind"], row["read_error"]), 0.0)
        return self.core.decode(row["data"])

    def _label_rows(self, rows: list[dict]) -> list[dict]:
        """Rows ``forward_batch`` at a time: only that many decoded photos and full-size parses
        are alive at once, so a batch of large photos stays within an actor's memory."""
        step = self.cfg.forward_batch
        return [row for start in range(0, len(rows), step) for row in self._label_chunk(rows[start : start + step])]

    def _label_chunk(self, rows: list[dict]) -> list[dict]:
        decoded = [self._decode(r) for r in rows]
        labels: list[dict | None] = [d.error for d in decoded]
        ok = [i for i, d in enumerate(decoded) if d.image is not None]
        for i, label in zip(ok, self.core.label_images([decoded[i].image for i in ok]) if ok else [], strict=True):
            labels[i] = label
        return [self._row(r, labels[i], decoded[i].seconds or None) for i, r in enumerate(rows)]

    def _row(self, row: dict, label: dict | None, decode_s: float | None) -> dict:
        return self.core.row({k: row[k] for k in LISTING_COLUMNS}, label, row["read_s"], decode_s)

    def _crashed(self, row: dict, attempts: int) -> dict:
        return self._row(row, crash_label(attempts), None)

    def __call__(self, batch: pa.Table) -> pa.Table:
        """A block of read rows -> its output rows. A row that could not be read becomes its error
        row at once: it never reaches the model, so it cannot crash the worker and needs no ledger
        round trip (the job's ceiling, docs/job.md). The others go ``batch_size`` at a time, each
        group one ledger batch, and only that group's bytes become Python objects."""
        keys = batch.select([c for c in (*LISTING_COLUMNS, *READ_COLUMNS) if c != "data"]).to_pylist()
        out = [None if k["read_error"] is None else self._row(k, self._decode(k).error, None) for k in keys]
        live = [i for i, k in enumerate(keys) if k["read_error"] is None]
        step = self.cfg.batch_size
        for start in range(0, len(live), step):
            group = live[start : start + step]
            rows = batch.take(group).select([*LISTING_COLUMNS, *READ_COLUMNS]).to_pylist()
            for i, row in zip(group, self._label_with_ledger(rows), strict=True):
                out[i] = row
        return rows_table(out, batch, self.out_schema)


def crash_label(attempts: int) -> dict:
    """The label columns of an image that killed its worker ``attempts`` times (it is skipped)."""
    return error_columns(
        "worker_crash",
        f"labelling this image killed the worker process {attempts} times "
        "(out of memory or a native crash); it was skipped",
    )


def rows_table(rows: list[dict], batch: pa.Table, out_schema: pa.Schema) -> pa.Table:
    """Output rows as a table of ``out_schema``: the schema's columns, then the manifest's
    passthrough columns taken from ``batch`` (the same rows, in order), as are a video frame's columns."""
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    for f in out_schema:
        if f.name not in SCHEMA.names:
            table = table.append_column(f, batch.column(f.name).cast(f.type))
        elif f.name in VIDEO_COLUMNS and f.name in batch.column_names:  # a frame's, from the read stage
            table = table.set_column(table.schema.get_field_index(f.name), f, batch.column(f.name).cast(f.type))
    return table.cast(out_schema)


def _node_id() -> str:
    """The Ray node this process runs on ("local" outside Ray, also where Ray is not installed)."""
    ray = sys.modules.get("ray")
    return ray.get_runtime_context().get_node_id() if ray is not None and ray.is_initialized() else "local"


def actor_threads(cpus_per_actor: float) -> int:
    """torch threads for an actor holding ``cpus_per_actor`` CPUs."""
    return max(1, math.floor(cpus_per_actor + 1e-9))
