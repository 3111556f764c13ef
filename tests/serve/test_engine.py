"""``m2fp-batch serve --engine onnxruntime``: a real service whose answers equal the torch engine's
(the job's labelling stage on the same bytes) within the parity tolerance."""

from __future__ import annotations

import json

import pytest
from badfiles import MAX_PIXELS, MIN_SIDE
from engine_rows import assert_rows_close

from m2fp_batch.settings import EngineSettings

from .conftest import MAX_SIZE, SHORT_EDGE, serving
from .test_api import PHOTOS, _as_row, job_rows  # noqa: F401 - job_rows: the torch engine's rows (a fixture)

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.cluster


def test_onnxruntime_answers_equal_torch_rows(tiny_model_dir, job_rows):  # noqa: F811
    with serving(tiny_model_dir, ("--engine", "onnxruntime")) as srv:
        answers = {name: srv.post(make(), name=name) for name, make in PHOTOS.items()}
    settings = EngineSettings(
        model=str(tiny_model_dir),
        engine="onnxruntime",
        max_pixels=MAX_PIXELS,
        min_side=MIN_SIDE,
        short_edge=SHORT_EDGE,
        max_size=MAX_SIZE,
    )
    for name, (status, _, body) in answers.items():
        assert status == 200, body[:500]
        answer = json.loads(body)
        assert answer["model"]["config_hash"] == settings.label_hash() != job_rows[name]["config_hash"]
        assert_rows_close(_as_row(answer) | {"status": "ok"}, job_rows[name])
