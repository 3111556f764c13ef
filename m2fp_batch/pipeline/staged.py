"""The staged pipeline for GPU actors: CPU decode tasks -> device actors -> CPU row tasks.

The single-stage job (:class:`~m2fp_batch.pipeline.worker.Labeler`) decodes, runs the model and
builds rows in one CPU actor. On a GPU that would leave the device waiting on the CPU work (a
photo's decode, RLE encoding, part statistics and skin tone take longer than its forward), so
here the work is cut in three Ray Data stages, following Ray's batch-inference pattern:

1. :class:`DecodeStage` (CPU tasks, ``stage_cpus`` each): decode under the guards, adaptive
   brightness, the official resize. Under the crash ledger, as the single-stage actor's decode is.
2. :class:`DeviceStage` (the actor pool, ``cpus_per_actor`` CPUs and ``gpus_per_actor`` of a GPU
   each): normalise, forward and the tensor part of the postprocess (mask upsampling, scores,
   arg-max) on the device, ``forward_batch`` photos of one padded size at a time, under the crash
   ledger. A CUDA out-of-memory error retries the photo alone, then makes its error row.
3. :func:`build_rows` (CPU tasks): RLE, part statistics, skin tone and provenance: the output rows.

Each photo travels between the stages as an :class:`InFlight` (pickled into one Arrow column, the
manifest's passthrough columns beside it). With ``device: cpu`` and ``staged: true`` the same
stages run on CPU actors: CI checks that their rows equal the single-stage rows.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa

from m2fp_batch.annotate.brightness import model_input
from m2fp_batch.memory import release_free_memory
from m2fp_batch.photo_to_row import decode_step
from m2fp_batch.pipeline.config import JobSettings, JobSettingsError
from m2fp_batch.pipeline.inputs import LISTING_COLUMNS, READ_COLUMNS
from m2fp_batch.pipeline.worker import Labeler, LedgerRuns, crash_label, rows_table
from m2fp_batch.rows import error_columns, finish_row, result_columns
from m2fp_batch.schema import SCHEMA

__all__ = [
    "PAYLOAD",
    "DecodeStage",
    "DeviceStage",
    "InFlight",
    "build_rows",
    "check_device",
    "decode_block",
    "staged_pool_size",
    "staged_stages",
]

PAYLOAD = "_m2fp_in_flight"  # the pickled InFlight of each row between the stages


@dataclass
class InFlight:
    """One photo between the stages.

    ``key``: its listing columns; ``image``: the original pixels (skin tone is measured on them);
    ``resized``: the model input resized on the CPU (``inference.parser.Resized``), dropped after
    the device stage; ``factor``: the brightening applied to the model input; ``label``: its label
    columns once known without the model (a read, decode or model error, a worker crash);
    ``result``: the engine's ``ParseResult``; ``provenance``, ``class_names``: from the device actor.
    """

    key: dict[str, Any]
    read_s: float | None
    decode_s: float | None
    image: np.ndarray | None = None
    resized: Any = None
    factor: float | None = None
    label: dict[str, Any] | None = None
    result: Any = None
    provenance: dict[str, Any] = field(default_factory=dict)
    class_names: tuple[str, ...] = ()


def _pack(items: list[InFlight]) -> pa.Array:
    return pa.array([pickle.dumps(i, protocol=5) for i in items], pa.large_binary())


def _unpack(batch: pa.Table) -> list[InFlight]:
    # our own stages' objects, within one job (never bytes from outside the pipeline)
    return [pickle.loads(b) for b in batch.column(PAYLOAD).to_pylist()]


def _carry(batch: pa.Table, items: list[InFlight]) -> pa.Table:
    """``batch`` without the read columns and the old payload, with ``items`` as the payload."""
    gone = [c for c in (*READ_COLUMNS, PAYLOAD) if c in batch.column_names]
    return batch.drop_columns(gone).append_column(PAYLOAD, _pack(items))


class DecodeStage(LedgerRuns):
    """Stage 1 (CPU tasks): read rows -> decoded, brightened and resized photos, or their error."""

    def __init__(self, cfg: JobSettings, ledger) -> None:
        self.cfg, self.ledger = cfg, ledger

    def _prepare(self, row: dict) -> InFlight:
        from m2fp_batch.inference.parser import resize_for_model

        key = {k: row[k] for k in LISTING_COLUMNS}
        decoded = decode_step(row["data"], self.cfg.engine)
        if decoded.image is None:
            return InFlight(key, row["read_s"], decoded.seconds or None, label=decoded.error)
        x, factor = model_input(decoded.image, self.cfg.engine.adaptive_brightness)
        resized = resize_for_model(x, self.cfg.engine.short_edge, self.cfg.engine.max_size)
        return InFlight(key, row["read_s"], decoded.seconds or None, decoded.image, resized, factor)

    def _label_rows(self, rows: list[dict]) -> list[InFlight]:
        return [self._prepare(r) for r in rows]

    def _crashed(self, row: dict, attempts: int) -> InFlight:
        return InFlight({k: row[k] for k in LISTING_COLUMNS}, row["read_s"], None, label=crash_label(attempts))

    def __call__(self, batch: pa.Table) -> pa.Table:
        """A block of read rows; an unread row is its error at once (no ledger round trip)."""
        rows = batch.select([*LISTING_COLUMNS, *READ_COLUMNS]).to_pylist()
        out: list[InFlight | None] = [None] * len(rows)
        live = []
        for i, r in enumerate(rows):
            if r["read_error"] is None:
                live.append(i)
            else:
                label = error_columns(r["read_error_kind"], r["read_error"])
                out[i] = InFlight({k: r[k] for k in LISTING_COLUMNS}, r["read_s"], None, label=label)
        for start in range(0, len(live), self.cfg.batch_size):
            group = live[start : start + self.cfg.batch_size]
            for i, item in zip(group, self._label_with_ledger([rows[i] for i in group]), strict=True):
                out[i] = item
        return _carry(batch, out)  # type: ignore[arg-type]


def decode_block(batch: pa.Table, cfg: JobSettings, ledger) -> pa.Table:
    """Stage 1 as a Ray Data task function."""
    return DecodeStage(cfg, ledger)(batch)


class DeviceStage(Labeler):
    """Stage 2 (the actor pool): the labelling core's device part on the resized photos. The model
    loads once, in ``__init__`` (the class is handed to Ray Data, never a built model)."""

    def __init__(self, cfg: JobSettings, ledger, threads: int, model=None) -> None:
        super().__init__(cfg, SCHEMA, ledger, threads, model)

    def _label_chunk(self, rows: list[dict]) -> list[InFlight]:
        items = [r["item"] for r in rows]
        outcomes = self.core.infer_resized([it.resized for it in items])
        for it, outcome in zip(items, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                it.label = self.core.failed(outcome, it.image, it.factor)
            else:
                it.result = outcome
            it.resized = None
        del outcomes
        release_free_memory()
        return items

    def _crashed(self, row: dict, attempts: int) -> InFlight:
        return replace(row["item"], label=crash_label(attempts), resized=None)

    def __call__(self, batch: pa.Table) -> pa.Table:
        """A block of decoded photos; those already holding their error skip the model and the ledger."""
        items = _unpack(batch)
        live = [i for i, it in enumerate(items) if it.label is None]
        for start in range(0, len(live), self.cfg.batch_size):
            group = live[start : start + self.cfg.batch_size]
            rows = [{"image_id": items[i].key["image_id"], "item": items[i]} for i in group]
            for i, item in zip(group, self._label_with_ledger(rows), strict=True):
                items[i] = item
        for it in items:
            it.provenance, it.class_names = self.core.provenance, self.core.class_names
        return _carry(batch, items)


def build_rows(batch: pa.Table, out_schema: pa.Schema) -> pa.Table:
    """Stage 3 (CPU tasks): RLE, part statistics, skin tone and provenance -> the output rows."""
    rows = []
    for it in _unpack(batch):
        label = it.label
        if label is None:
            label = result_columns(it.result, it.class_names, it.image, it.factor)
        rows.append(finish_row(it.key, label, it.provenance, it.read_s, it.decode_s))
    return rows_table(rows, batch.drop_columns([PAYLOAD]), out_schema)


def staged_stages(ds, cfg: JobSettings, model, threads: int, compute, out_schema: pa.Schema, ledger):
    """The three stages after the read stage of the Ray Data pipeline ``ds`` (``compute``: the
    device actors' pool strategy)."""
    ds = ds.map_batches(
        decode_block,
        fn_kwargs={"cfg": cfg, "ledger": ledger},
        batch_format="pyarrow",
        batch_size=None,
        num_cpus=cfg.stage_cpus,
    )
    ds = ds.map_batches(
        DeviceStage,
        fn_constructor_kwargs={"cfg": cfg, "ledger": ledger, "threads": threads, "model": model},
        batch_format="pyarrow",
        batch_size=None,
        num_cpus=cfg.cpus_per_actor,  # set with num_gpus: a fractional GPU with the default CPU stays pending
        num_gpus=cfg.gpus_per_actor,
        compute=compute,
    )
    return ds.map_batches(
        build_rows,
        fn_kwargs={"out_schema": out_schema},
        batch_format="pyarrow",
        batch_size=None,
        num_cpus=cfg.stage_cpus,
    )


def staged_pool_size(cfg: JobSettings, nodes: list[dict]) -> int:
    """Device actors the alive Ray ``nodes`` fit: per node, by its GPUs when ``gpus_per_actor`` > 0,
    and by its CPUs after one task of the CPU stages (``stage_cpus``) and the reads (``read_cpus``).

    Raises:
        JobSettingsError: GPUs asked for and no node has one, or no node fits one actor.
    """
    fits = []
    for n in nodes:
        res = n.get("Resources", {})
        by_cpu = math.floor((float(res.get("CPU", 0)) - cfg.stage_cpus - cfg.read_cpus) / cfg.cpus_per_actor + 1e-9)
        by_gpu = math.floor(float(res.get("GPU", 0)) / cfg.gpus_per_actor + 1e-9) if cfg.gpus_per_actor else by_cpu
        fits.append(max(0, min(by_cpu, by_gpu)))
    gpus = sum(float(n.get("Resources", {}).get("GPU", 0)) for n in nodes)
    if cfg.gpus_per_actor and not gpus:
        raise JobSettingsError(
            f"gpus_per_actor={cfg.gpus_per_actor:g} but the Ray cluster has no GPU: run on a node with one "
            "(ray start --num-gpus N), or set device: cpu and gpus_per_actor: 0"
        )
    if not sum(fits):
        raise JobSettingsError(
            f"no Ray node fits one device actor ({cfg.cpus_per_actor:g} CPU(s) + {cfg.gpus_per_actor:g} GPU) beside "
            f"the staged pipeline's CPU tasks (stage_cpus={cfg.stage_cpus:g}): lower cpus_per_actor or stage_cpus"
        )
    fit = sum(fits)
    if cfg.max_actors is None:
        return fit
    return cfg.max_actors if cfg.autoscaling else min(cfg.max_actors, fit)


def check_device(cfg: JobSettings) -> None:
    """``device: cuda`` on a local Ray (no cluster): CUDA checked in the driver, one sentence before
    Ray starts (a cluster's GPUs are counted by :func:`staged_pool_size`)."""
    if cfg.engine.device == "cuda" and not cfg.ray_address():
        from m2fp_batch.inference.device import resolve_device

        resolve_device(cfg.engine.device)
