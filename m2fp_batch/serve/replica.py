"""A model replica: decode with the job's guards, parse in ``serve.batch`` batches on the job's engine,
build the job's row, render the asked-for PNG. The model loads once, in ``__init__``."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from ray import serve

from m2fp_batch.annotate.brightness import adaptive_brightness
from m2fp_batch.annotate.parts import semantic_class_scores
from m2fp_batch.annotate.render import encode_png, people_mask, render_png
from m2fp_batch.decode import ImageError, decode_image
from m2fp_batch.rows import finish_row, result_columns
from m2fp_batch.serve.answers import FORMAT_RENDER, Reply, error_reply, parse_json
from m2fp_batch.serve.settings import ServeSettings

log = logging.getLogger(__name__)

# Engine failures the job turns into ``inference_error`` rows (pipeline/worker.py catches the same).
ENGINE_ERRORS = (RuntimeError, ValueError, MemoryError, IndexError)


@dataclass(frozen=True)
class ParseRequest:
    """One upload: its bytes, the answer format and the overlay opacity (validated by the front end)."""

    data: bytes
    format: str = "json"
    alpha: float = 0.5
    filename: str = "upload"


class ParserReplica:
    """The engine behind ``POST /api/parse`` (a Ray Serve deployment; see ``app.build_app``)."""

    def __init__(self, settings: ServeSettings) -> None:
        from PIL import ImageFile

        from m2fp_batch import __version__
        from m2fp_batch.inference import M2FPParser

        ImageFile.LOAD_TRUNCATED_IMAGES = False
        self.settings = settings
        self.parser = M2FPParser.from_pretrained(
            settings.model,
            revision=settings.model_revision,
            threads=settings.replica_threads,
            max_batch=settings.max_batch,
            short_edge=settings.short_edge,
            max_size=settings.max_size,
        )
        info = self.parser.info
        self.provenance = {
            "model": settings.model,
            "model_id": info.model_id if info else None,
            "model_revision": (info.revision if info else None) or settings.model_revision,
            "checkpoint_sha256": info.checkpoint_sha256 if info else "",
            "package_version": __version__,
            "config_hash": settings.config_hash(),
        }
        # torch runs on one thread of ours (its own pool does the parallel work); decoding and rows on others
        self._engine = ThreadPoolExecutor(1, thread_name_prefix="m2fp-engine")
        self._infer.set_max_batch_size(settings.max_batch)
        self._infer.set_batch_wait_timeout_s(settings.batch_wait_s)

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.01)
    async def _infer(self, images: list[np.ndarray]) -> list:
        """The engine on a batch of model inputs; it groups them by padded size itself (never changing a
        result). A failing batch is retried image by image; a failing image gets its exception back."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._engine, self.parser.parse, images)
        except ENGINE_ERRORS as e:
            if len(images) == 1:
                return [e]
        out = []
        for image in images:
            try:
                out.extend(await loop.run_in_executor(self._engine, self.parser.parse, [image]))
            except ENGINE_ERRORS as e:
                out.append(e)
        return out

    def _decode(self, data: bytes) -> np.ndarray:
        return decode_image(data, max_pixels=self.settings.max_pixels, min_side=self.settings.min_side)

    def _model_input(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        if self.settings.adaptive_brightness:
            return adaptive_brightness(image)
        return image, 1.0

    async def __call__(self, request: ParseRequest) -> Reply:
        t0 = time.perf_counter()
        try:
            image = await asyncio.to_thread(self._decode, request.data)
        except ImageError as e:
            return error_reply(e.kind, e.message)
        decode_s = time.perf_counter() - t0
        model_input, factor = self._model_input(image)
        result = await self._infer(model_input)
        if isinstance(result, Exception):
            msg = f"the model failed on this image: {type(result).__name__}: {result}"
            return error_reply("inference_error", msg)
        return await asyncio.to_thread(self._answer, request, image, result, factor, decode_s)

    def _answer(self, request: ParseRequest, image: np.ndarray, result, factor: float, decode_s: float) -> Reply:
        engine_s = sum(result.timings.get(k, 0.0) for k in ("preprocess", "forward", "postprocess"))
        if request.format != "json":
            png = render_png(FORMAT_RENDER[request.format], image, result.semantic, result.persons, request.alpha)
            return Reply(200, png=png, inference_time=engine_s)
        key = {"image_id": hashlib.sha1(request.data).hexdigest()[:20], "uri": request.filename, "shard": 0}
        label = result_columns(result, self.parser.class_names, image, factor)
        row = finish_row(key, label, self.provenance, None, decode_s)
        scores = semantic_class_scores(result.semantic, result.semantic_score)
        stash = {
            ".png": render_png("parse", image, result.semantic, result.persons),
            "_people_mask.png": encode_png(people_mask(result.persons, result.semantic.shape)),
        }
        return Reply(200, parse_json(row, scores, engine_s), stash=stash, inference_time=engine_s)

    def info(self) -> dict:
        """Model provenance and classes for ``GET /api/info``."""
        return {**self.provenance, "classes": list(self.parser.class_names)}
