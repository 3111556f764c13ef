"""The pipeline's stages as plain Python: reading bytes (Ray tasks), labelling (Ray actors),
and the crash ledger (a small Ray actor that remembers which images were in flight when a
worker died). Rows never raise: every per-image failure becomes an ``error`` row."""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

import numpy as np
import pyarrow as pa

from m2fp_batch.annotate.brightness import adaptive_brightness
from m2fp_batch.decode import ImageError, decode_image
from m2fp_batch.rows import error_columns, finish_row, result_columns
from m2fp_batch.schema import SCHEMA
from m2fp_batch.storage import Filesystems, FileTooLargeError, NotARegularFileError, S3Options

log = logging.getLogger(__name__)

KEY_COLUMNS = ("image_id", "uri", "shard")


def read_batch(batch: pa.Table, s3: S3Options, max_bytes: int) -> pa.Table:
    """Add ``data`` (the file's bytes, null on failure), ``read_error``, ``read_error_kind``, ``read_s``.

    Only regular files are read, at most ``max_bytes + 1`` bytes each (see ``Filesystems.read_bytes``).
    """
    fss = Filesystems(s3)
    data, errors, kinds, secs = [], [], [], []
    for uri in batch.column("uri").to_pylist():
        t0 = time.perf_counter()
        blob, err, kind = None, None, None
        try:
            blob = fss.read_bytes(uri, max_bytes)
        except NotARegularFileError as e:
            err, kind = f"{uri}: {e}", "unreadable"
        except FileTooLargeError as e:
            err, kind = f"{e} ({uri})", "too_large"
        except FileNotFoundError:
            err, kind = f"the file does not exist: {uri}", "missing"
        except IsADirectoryError:
            err, kind = f"a directory, not a file: {uri}", "unreadable"
        except PermissionError as e:
            err, kind = f"permission denied reading {uri}: {e}", "unreadable"
        except (OSError, ValueError) as e:
            msg = str(e)
            if "does not exist" in msg or "NoSuchKey" in msg or "Path does not exist" in msg:
                err, kind = f"the file does not exist: {uri}", "missing"
            else:
                err, kind = f"could not read {uri}: {msg}", "unreadable"
        data.append(blob)
        errors.append(err)
        kinds.append(kind)
        secs.append(time.perf_counter() - t0)
    return (
        batch.append_column("data", pa.array(data, pa.large_binary()))
        .append_column("read_error", pa.array(errors, pa.string()))
        .append_column("read_error_kind", pa.array(kinds, pa.string()))
        .append_column("read_s", pa.array(secs, pa.float64()))
    )


class CrashLedger:
    """Counts, per image, the labelling attempts that never finished (their worker died).

    Lives in one Ray actor per job (no CPU). A batch whose images have no unfinished attempt
    runs as a batch; otherwise its images run one by one, and an image with
    ``max_crashes`` unfinished attempts becomes an error row instead of running again.
    """

    def __init__(self) -> None:
        self.unfinished: dict[str, int] = {}
        self.loads: dict[str, int] = {}

    def model_loaded(self, node: str) -> None:
        """An actor on ``node`` (a Ray node id) loaded the model."""
        self.loads[node] = self.loads.get(node, 0) + 1

    def model_loads(self) -> dict[str, int]:
        """Model loads per node."""
        return dict(self.loads)

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


def _model_location(settings: dict[str, Any]) -> str:
    """Where an actor loads the model: the driver's resolved dir when this node sees it, else the
    ModelScope id (the same revision, downloaded into this node's cache; the sha256 is checked)."""
    model_dir = settings.get("model_dir")
    if model_dir and os.path.isdir(model_dir):
        return model_dir
    return settings.get("model_id") or settings["model"]


class Labeler:
    """Decode + M2FP + rows for a batch of read rows. The model loads once, in ``__init__``.

    Args:
        settings: the job config as a dict (``JobConfig.to_dict``).
        out_schema: the full output schema (``schema.output_schema`` with passthrough columns).
        ledger: a :class:`CrashLedger` actor handle, or None (no crash bookkeeping).
        threads: torch threads (the actor's CPUs).
    """

    def __init__(self, settings: dict[str, Any], out_schema: pa.Schema, ledger, threads: int) -> None:
        from PIL import ImageFile

        from m2fp_batch import __version__
        from m2fp_batch.inference import M2FPParser

        ImageFile.LOAD_TRUNCATED_IMAGES = False
        self.settings = settings
        self.out_schema = out_schema
        self.passthrough = [f for f in out_schema if f.name not in SCHEMA.names]
        self.ledger = ledger
        self.max_crashes = int(settings["max_worker_crashes"])
        self.parser = M2FPParser.from_pretrained(
            _model_location(settings),
            revision=settings.get("model_revision"),
            trust_checkpoint=bool(settings.get("trust_checkpoint")),
            threads=max(1, int(threads)),
            max_batch=int(settings["forward_batch"]),
            short_edge=int(settings["short_edge"]),
            max_size=int(settings["max_size"]),
        )
        self._call("model_loaded", _node_id())
        info = self.parser.info
        if info and settings.get("checkpoint_sha256") and info.checkpoint_sha256 != settings["checkpoint_sha256"]:
            raise RuntimeError(
                f"this node loaded checkpoint sha256 {info.checkpoint_sha256[:16]}... from {info.model_dir}, "
                f"the driver resolved {settings['checkpoint_sha256'][:16]}...: the model differs between nodes"
            )
        self.provenance = {
            "model": settings["model"],
            "model_id": info.model_id if info else None,
            "model_revision": (info.revision if info else None) or settings.get("model_revision"),
            "checkpoint_sha256": info.checkpoint_sha256 if info else "",
            "package_version": __version__,
            "config_hash": settings["config_hash"],
        }

    # -- ledger calls (no-ops without a ledger)
    def _call(self, method: str, *args):
        """Call the ledger: a Ray actor handle, or a plain :class:`CrashLedger` in-process."""
        if self.ledger is None:
            return None
        fn = getattr(self.ledger, method)
        if hasattr(fn, "remote"):
            import ray

            return ray.get(fn.remote(*args))
        return fn(*args)

    def _decode(self, row: dict) -> tuple[Any, dict | None, float]:
        t0 = time.perf_counter()
        if row["read_error"] is not None:
            return None, error_columns(row["read_error_kind"], row["read_error"]), 0.0
        try:
            img = decode_image(
                row["data"], max_pixels=int(self.settings["max_pixels"]), min_side=int(self.settings["min_side"])
            )
        except ImageError as e:
            return None, error_columns(e.kind, e.message), time.perf_counter() - t0
        return img, None, time.perf_counter() - t0

    def _model_input(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """The image the model sees: brightened when ``adaptive_brightness`` is on and it is dark."""
        if self.settings.get("adaptive_brightness"):
            return adaptive_brightness(image)
        return image, 1.0

    def _parse(self, images: list[np.ndarray]) -> list[dict]:
        """Label columns per original image; an engine failure on a batch is retried image by image."""
        inputs = [self._model_input(im) for im in images]
        try:
            results = self.parser.parse([x for x, _ in inputs])
        except (RuntimeError, ValueError, MemoryError, IndexError) as e:
            if len(images) == 1:
                msg = f"the model failed on this image: {type(e).__name__}: {e}"
                return [error_columns("inference_error", msg, images[0], inputs[0][1])]
            return [self._parse([im])[0] for im in images]
        return [
            result_columns(r, self.parser.class_names, im, factor)
            for r, im, (_, factor) in zip(results, images, inputs, strict=True)
        ]

    def _label_rows(self, rows: list[dict]) -> list[dict]:
        """Rows ``forward_batch`` at a time: only that many decoded photos and full-size parses
        are alive at once, so a batch of large photos stays within an actor's memory."""
        step = max(1, int(self.settings["forward_batch"]))
        return [row for start in range(0, len(rows), step) for row in self._label_chunk(rows[start : start + step])]

    def _label_chunk(self, rows: list[dict]) -> list[dict]:
        decoded = [self._decode(r) for r in rows]
        labels: list[dict | None] = [err for _, err, _ in decoded]
        to_parse = [i for i, (img, _, _) in enumerate(decoded) if img is not None]
        for i, lab in zip(to_parse, self._parse([decoded[i][0] for i in to_parse]) if to_parse else [], strict=True):
            labels[i] = lab
        return [
            finish_row({k: r[k] for k in KEY_COLUMNS}, labels[i], self.provenance, r["read_s"], decoded[i][2] or None)
            for i, r in enumerate(rows)
        ]

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.select([*KEY_COLUMNS, "data", "read_error", "read_error_kind", "read_s"]).to_pylist()
        ids = [r["image_id"] for r in rows]
        counts = self._call("begin_batch", ids) or [0] * len(ids)
        if not any(counts):
            out = self._label_rows(rows)
            self._call("finish", ids)
        else:
            out = []
            for r in rows:
                n = self._call("begin_one", r["image_id"])
                if n >= self.max_crashes:
                    label = error_columns(
                        "worker_crash",
                        f"labelling this image killed the worker process {n} times "
                        "(out of memory or a native crash); it was skipped",
                    )
                    out.append(finish_row({k: r[k] for k in KEY_COLUMNS}, label, self.provenance, r["read_s"], None))
                else:
                    out.extend(self._label_rows([r]))
                self._call("finish", [r["image_id"]])
        table = pa.Table.from_pylist(out, schema=SCHEMA)
        for f in self.passthrough:
            table = table.append_column(f, batch.column(f.name).cast(f.type))
        return table.cast(self.out_schema)


def _node_id() -> str:
    """The Ray node this process runs on ("local" outside Ray)."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"


def actor_threads(cpus_per_actor: float) -> int:
    """torch threads for an actor holding ``cpus_per_actor`` CPUs."""
    return max(1, math.floor(cpus_per_actor + 1e-9))
