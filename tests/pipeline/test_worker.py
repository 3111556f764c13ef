"""The labelling stage without Ray: rows for decoded and failed inputs, and the crash ledger
(an image whose attempts killed the worker twice becomes an error row; its batch mates run)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from badfiles import MAX_PIXELS, MIN_SIDE, bad_files, good_files

from m2fp_batch.pipeline.config import JobConfig
from m2fp_batch.pipeline.worker import CrashLedger, Labeler
from m2fp_batch.schema import SCHEMA, output_schema


def _batch(items: list[tuple[str, bytes | None]]) -> pa.Table:
    n = len(items)
    return pa.table(
        {
            "image_id": [f"id{i}" for i in range(n)],
            "uri": [name for name, _ in items],
            "shard": pa.array([0] * n, pa.int32()),
            "data": pa.array([d for _, d in items], pa.large_binary()),
            "read_error": [None if d is not None else "the file does not exist: x" for _, d in items],
            "read_error_kind": [None if d is not None else "missing" for _, d in items],
            "read_s": [0.001] * n,
            "caption": [f"c{i}" for i in range(n)],
        }
    )


@pytest.fixture(scope="module")
def settings(tiny_model_dir):
    cfg = JobConfig(input="x", output="y", model=str(tiny_model_dir), max_pixels=MAX_PIXELS, min_side=MIN_SIDE)
    return {**cfg.to_dict(redact=False), "config_hash": cfg.config_hash()}


def test_rows_for_good_bad_and_missing(settings):
    schema = output_schema(pa.schema([("caption", pa.string())]))
    labeler = Labeler(settings, schema, None, threads=1)
    batch = _batch(
        [
            ("photo.jpg", good_files()["good/photo.jpg"][0]),
            ("trunc.png", bad_files()["bad/truncated.png"][0]),
            ("gone.jpg", None),
            ("cmyk.jpg", good_files()["good/cmyk.jpg"][0]),
        ]
    )
    out = labeler(batch)
    assert out.schema.equals(schema, check_metadata=False)
    rows = out.to_pylist()
    assert [r["status"] for r in rows] == ["ok", "error", "error", "ok"]
    assert [r["error_kind"] for r in rows] == [None, "truncated", "missing", None]
    assert [r["caption"] for r in rows] == ["c0", "c1", "c2", "c3"]
    ok = rows[0]
    assert (ok["width"], ok["height"]) == (512, 512) and ok["num_persons"] == len(ok["persons"]) > 0
    assert ok["checkpoint_sha256"] and ok["config_hash"] == settings["config_hash"]
    assert ok["timings"]["forward_s"] > 0 and ok["timings"]["read_s"] == pytest.approx(0.001)
    assert rows[1]["persons"] is None and rows[1]["error"].startswith("the image data is truncated")


def test_image_that_crashed_workers_twice_becomes_an_error_row(settings):
    photo = good_files()["good/photo.jpg"][0]
    batch = _batch([("a.jpg", photo), ("b.jpg", photo), ("c.jpg", photo)])
    ledger = CrashLedger()
    # worker 1 died during the batch; worker 2 died while running id1 alone
    assert ledger.begin_batch(["id0", "id1", "id2"]) == [0, 0, 0]
    assert ledger.begin_one("id1") == 1
    labeler = Labeler(settings, SCHEMA, ledger, threads=1)
    rows = labeler(batch.drop_columns(["caption"])).to_pylist()
    assert [r["status"] for r in rows] == ["ok", "error", "ok"]
    assert rows[1]["error_kind"] == "worker_crash" and "2 times" in rows[1]["error"]
    assert ledger.size() == 0
    # a clean batch runs as one batch and leaves nothing behind
    assert [r["status"] for r in labeler(batch.drop_columns(["caption"])).to_pylist()] == ["ok"] * 3
    assert ledger.size() == 0
