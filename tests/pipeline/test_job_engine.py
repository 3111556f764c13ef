"""``m2fp-batch run --engine onnxruntime`` on a local Ray: the actors export the network once into
the engine cache and label real photos as the torch engine does (within the parity tolerance)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from engine_rows import assert_rows_close
from PIL import Image
from skimage import data

from m2fp_batch import cli as m2fp_cli
from m2fp_batch.pipeline.config import JobSettings
from m2fp_batch.pipeline.worker import Labeler
from m2fp_batch.schema import SCHEMA
from m2fp_batch.settings import EngineSettings

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.cluster

PHOTOS = ("astronaut", "coffee", "chelsea")


def _torch_rows(model: str, files: list) -> dict[str, dict]:
    """The torch engine's rows for the same bytes: the job's labelling stage, in this process."""
    labeler = Labeler(JobSettings(input="x", output="y", engine=EngineSettings(model=model)), SCHEMA, None, threads=1)
    n = len(files)
    batch = pa.table(
        {
            "image_id": [f.stem for f in files],
            "uri": [str(f) for f in files],
            "shard": pa.array([0] * n, pa.int32()),
            "data": pa.array([f.read_bytes() for f in files], pa.large_binary()),
            "read_error": pa.array([None] * n, pa.string()),
            "read_error_kind": pa.array([None] * n, pa.string()),
            "read_s": [0.0] * n,
        }
    )
    return {r["uri"]: r for r in labeler(batch).to_pylist()}


def test_job_with_onnxruntime_equals_torch(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("M2FP_ENGINE_CACHE", str(tmp_path / "cache"))
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for name in PHOTOS:
        Image.fromarray(getattr(data, name)()).save(src / f"{name}.jpg", quality=92)
    argv = ["run", "--input", str(src), "--out", str(out), "--model", str(tiny_model_dir), "--engine", "onnxruntime"]
    assert m2fp_cli.main(argv) == 0
    rows = {r["uri"]: r for r in pq.read_table(out).to_pylist()}
    assert len(rows) == len(PHOTOS)
    assert list((tmp_path / "cache").glob("*/onnx/model.onnx")), "the actors exported into the engine cache"
    ref = _torch_rows(str(tiny_model_dir), sorted(src.iterdir()))
    for uri, row in rows.items():
        assert row["config_hash"] == EngineSettings(model=str(tiny_model_dir), engine="onnxruntime").label_hash()
        assert_rows_close(row, ref[uri])
