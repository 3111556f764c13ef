"""A photo's bytes -> its output row, shared by the job's actor (``pipeline/worker.py``, ``Labeler``)
and the service's replica (``serve/replica.py``): bytes -> decode (guards) -> model input (adaptive
brightness) -> engine -> row with provenance (:class:`PhotoToRow`).

The steps are separate methods so that a caller can run the engine step its own way (the service
batches it with ``serve.batch``); what each step does (the guards, the brightening, which engine
failures become ``inference_error`` rows, the provenance columns) is defined here once.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from m2fp_batch.annotate.brightness import model_input
from m2fp_batch.decode import ImageError, decode_image
from m2fp_batch.memory import release_free_memory
from m2fp_batch.rows import error_columns, finish_row, result_columns
from m2fp_batch.settings import EngineSettings

__all__ = ["ENGINE_ERRORS", "PROVENANCE_COLUMNS", "Decoded", "PhotoToRow", "decode", "decode_step", "provenance"]

# Engine failures on one photo that become an ``inference_error`` row (anything else is a bug).
ENGINE_ERRORS = (RuntimeError, ValueError, MemoryError, IndexError)
# Every row's provenance columns (``provenance``), also the ``model`` object of an ``/api/parse`` answer.
PROVENANCE_COLUMNS = (
    "model", "model_id", "model_revision", "checkpoint_sha256", "package_version", "config_hash", "device",
)  # fmt: skip


@dataclass(frozen=True)
class Decoded:
    """A photo's decode step: the pixels, or the label columns of its error row; and the seconds it took."""

    image: np.ndarray | None
    error: dict[str, Any] | None
    seconds: float


def decode(data: bytes, settings: EngineSettings) -> np.ndarray:
    """(H, W, 3) uint8 RGB under the settings' guards (``max_bytes``, ``max_pixels``, ``min_side``).

    Raises:
        ImageError: the photo is refused; ``kind`` and ``message`` say why.
    """
    if len(data) > settings.max_bytes:
        raise ImageError("too_large", f"the file holds {len(data)} bytes, above max_bytes={settings.max_bytes}")
    return decode_image(data, max_pixels=settings.max_pixels, min_side=settings.min_side)


def decode_step(data: bytes, settings: EngineSettings) -> Decoded:
    """Decode under the guards; a refused photo gives the label columns of its error row."""
    t0 = time.perf_counter()
    try:
        image = decode(data, settings)
    except ImageError as e:
        return Decoded(None, error_columns(e.kind, e.message), time.perf_counter() - t0)
    return Decoded(image, None, time.perf_counter() - t0)


def provenance(settings: EngineSettings, info, package_version: str, device: str = "cpu") -> dict[str, Any]:
    """The provenance columns of every row (``info``: the loaded weights' ``ModelInfo`` or None;
    ``device``: where the network runs, e.g. ``cuda:0``)."""
    return {
        "model": settings.model,
        "model_id": info.model_id if info else None,
        "model_revision": (info.revision if info else None) or settings.revision,
        "checkpoint_sha256": info.checkpoint_sha256 if info else "",
        "package_version": package_version,
        "config_hash": settings.label_hash(),
        "device": device,
    }


class PhotoToRow:
    """One loaded engine and the settings it labels with.

    Args:
        settings: the engine settings (their ``label_hash`` is every row's ``config_hash``).
        parser: the loaded engine (an ``M2FPParser``).
    """

    def __init__(self, settings: EngineSettings, parser) -> None:
        from m2fp_batch import __version__

        self.settings = settings
        self.parser = parser
        self.class_names: tuple[str, ...] = parser.class_names
        self.provenance = provenance(settings, parser.info, __version__, str(parser.device))

    @classmethod
    def load(
        cls, settings: EngineSettings, *, threads: int | None = None, max_batch: int = 1, location: str | None = None
    ) -> PhotoToRow:
        """Load the engine once (``location``: where this process finds the model, default ``settings.model``).

        Also makes PIL refuse truncated files, whatever another library switched on.
        """
        from PIL import ImageFile

        from m2fp_batch.inference import M2FPParser

        ImageFile.LOAD_TRUNCATED_IMAGES = False
        where = dataclasses.replace(settings, model=location) if location else settings
        return cls(settings, M2FPParser.from_settings(where, threads=threads, max_batch=max_batch))

    # -- the steps
    def decode(self, data: bytes) -> Decoded:
        """Decode under the guards (:func:`decode_step`)."""
        return decode_step(data, self.settings)

    def model_input(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """The image the model sees (``annotate.brightness.model_input``) and the factor applied."""
        return model_input(image, self.settings.adaptive_brightness)

    def infer(self, inputs: list[np.ndarray]) -> list:
        """The engine on model inputs: a ``ParseResult`` per input, or the engine error it raised.
        A failing batch is retried image by image, so one bad photo never fails the others."""
        return self._retrying(self.parser.parse, inputs)

    def infer_resized(self, items: list) -> list:
        """:meth:`infer` on photos already resized on the CPU (``M2FPParser.resize``): the device part."""
        return self._retrying(self.parser.parse_resized, items)

    def _retrying(self, run, inputs: list) -> list:
        """``run`` on the batch; after an engine error (a CUDA out-of-memory error is one: the device's
        cached blocks are given back first) each input alone, its own error as its outcome."""
        try:
            return run(inputs)
        except ENGINE_ERRORS as e:
            from m2fp_batch.inference.device import after_engine_error

            after_engine_error(e, self.parser.device)
            if len(inputs) == 1:
                return [e]
        return [self._retrying(run, [x])[0] for x in inputs]

    def failed(self, error: BaseException, image: np.ndarray, factor: float) -> dict[str, Any]:
        """The label columns of the ``inference_error`` row of a photo the engine failed on."""
        msg = f"the model failed on this image: {type(error).__name__}: {error}"
        return error_columns("inference_error", msg, image, factor)

    def label(self, image: np.ndarray, outcome, factor: float) -> dict[str, Any]:
        """Label columns from the engine's outcome (``infer``'s item) for the ORIGINAL image."""
        if isinstance(outcome, BaseException):
            return self.failed(outcome, image, factor)
        return result_columns(outcome, self.class_names, image, factor)

    def label_images(self, images: list[np.ndarray]) -> list[dict[str, Any]]:
        """model input -> engine -> label columns, for decoded photos (one engine call). The parse
        results' full-size maps are given back to the system before the next photo is decoded."""
        inputs = [self.model_input(im) for im in images]
        outcomes = self.infer([x for x, _ in inputs])
        labels = [self.label(im, o, f) for im, o, (_, f) in zip(images, outcomes, inputs, strict=True)]
        del outcomes, inputs
        release_free_memory()
        return labels

    def row(self, key: dict[str, Any], label: dict[str, Any], read_s: float | None, decode_s: float | None) -> dict:
        """The output row: key columns (image_id, uri, shard), label columns, provenance, timings."""
        return finish_row(key, label, self.provenance, read_s, decode_s)
