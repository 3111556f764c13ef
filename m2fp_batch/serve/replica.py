"""A model replica: the job's labelling core (``m2fp_batch.photo_to_row``: decode with the guards, model
input, engine in ``serve.batch`` batches, the job's row), and the asked-for PNG. The model loads once,
in ``__init__``."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from ray import serve

from m2fp_batch.annotate.parts import semantic_class_scores
from m2fp_batch.annotate.render import encode_png, people_mask, render_png
from m2fp_batch.labelstudio.push import prediction
from m2fp_batch.photo_to_row import Decoded, PhotoToRow
from m2fp_batch.rows import ENGINE_STAGES
from m2fp_batch.serve.answers import (
    FORMAT_LS_PREDICTION,
    FORMAT_LS_ROW,
    FORMAT_RENDER,
    Reply,
    error_reply,
    parse_json,
)
from m2fp_batch.serve.settings import ServeSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParseRequest:
    """One upload: its bytes, the answer format and the overlay opacity (validated by the front end).

    Besides the formats of ``/api/parse``, the ML backend asks for :data:`FORMAT_LS_PREDICTION` (the
    Label Studio prediction ``push`` writes) and :data:`FORMAT_LS_ROW` (the job's row)."""

    data: bytes
    format: str = "json"
    alpha: float = 0.5
    filename: str = "upload"


class ParserReplica:
    """The engine behind ``POST /api/parse`` (a Ray Serve deployment; see ``app.build_app``): the
    labelling core's steps, with the engine step batched by ``serve.batch``."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.core = PhotoToRow.load(settings.engine, threads=settings.replica_threads, max_batch=settings.max_batch)
        # torch runs on one thread of ours (its own pool does the parallel work); decoding and rows on others
        self._engine = ThreadPoolExecutor(1, thread_name_prefix="m2fp-engine")
        self._infer.set_max_batch_size(settings.max_batch)
        self._infer.set_batch_wait_timeout_s(settings.batch_wait_s)

    @serve.batch  # its size and wait come from ServeSettings, set per replica in __init__
    async def _infer(self, inputs: list[np.ndarray]) -> list:
        """The core's engine step on a batch of model inputs: a ``ParseResult`` or the engine error per input."""
        return await asyncio.get_running_loop().run_in_executor(self._engine, self.core.infer, inputs)

    async def __call__(self, request: ParseRequest) -> Reply:
        decoded = await asyncio.to_thread(self.core.decode, request.data)
        if decoded.image is None:
            return error_reply(decoded.error["error_kind"], decoded.error["error"])
        model_input, factor = self.core.model_input(decoded.image)
        outcome = await self._infer(model_input)
        return await asyncio.to_thread(self._answer, request, decoded, outcome, factor)

    def _answer(self, request: ParseRequest, decoded: Decoded, result, factor: float) -> Reply:
        image = decoded.image
        if isinstance(result, BaseException):
            label = self.core.failed(result, image, factor)
            return error_reply(label["error_kind"], label["error"])
        engine_s = sum(result.timings.get(k, 0.0) for k in ENGINE_STAGES)
        if request.format in FORMAT_RENDER:
            png = render_png(FORMAT_RENDER[request.format], image, result.semantic, result.persons, request.alpha)
            return Reply(200, png=png, inference_time=engine_s)
        key = {"image_id": hashlib.sha1(request.data).hexdigest()[:20], "uri": request.filename, "shard": 0}
        row = self.core.row(key, self.core.label(image, result, factor), None, decoded.seconds)
        if request.format == FORMAT_LS_ROW:
            return Reply(200, {"row": row}, inference_time=engine_s)
        if request.format == FORMAT_LS_PREDICTION:
            return Reply(200, {"prediction": prediction(row)}, inference_time=engine_s)
        scores = semantic_class_scores(result.semantic, result.semantic_score)
        stash = {
            ".png": render_png("parse", image, result.semantic, result.persons),
            "_people_mask.png": encode_png(people_mask(result.persons, result.semantic.shape)),
        }
        return Reply(200, parse_json(row, scores, engine_s), stash=stash, inference_time=engine_s)

    def info(self) -> dict:
        """Model provenance and classes for ``GET /api/info``."""
        return {**self.core.provenance, "classes": list(self.core.class_names)}
