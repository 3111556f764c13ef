"""The staged pipeline (CPU decode -> device stage -> CPU rows) without Ray, on the CPU: its rows
equal the single-stage actor's rows, batching keeps each photo's result, the crash ledger holds,
and the job's GPU settings are checked before Ray starts."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest
from badfiles import MAX_PIXELS, MIN_SIDE, bad_files, good_files
from test_worker import _batch

from m2fp_batch.pipeline.config import JobSettings, JobSettingsError
from m2fp_batch.pipeline.staged import DecodeStage, DeviceStage, build_rows, staged_pool_size
from m2fp_batch.pipeline.worker import CrashLedger, Labeler
from m2fp_batch.schema import output_schema
from m2fp_batch.settings import EngineSettings

SCHEMA_WITH_CAPTION = output_schema(pa.schema([("caption", pa.string())]))


@pytest.fixture(scope="module")
def cfg(tiny_model_dir) -> JobSettings:
    engine = EngineSettings(model=str(tiny_model_dir), max_pixels=MAX_PIXELS, min_side=MIN_SIDE, threads=1)
    return JobSettings(input="x", output="y", engine=engine, batch_size=3, staged=True)


def _photos() -> pa.Table:
    good, bad = good_files(), bad_files()
    return _batch(
        [
            ("photo.jpg", good["good/photo.jpg"][0]),
            ("trunc.png", bad["bad/truncated.png"][0]),
            ("gone.jpg", None),
            ("cmyk.jpg", good["good/cmyk.jpg"][0]),
            ("again.jpg", good["good/photo.jpg"][0]),
        ]
    )


def _staged(cfg: JobSettings, batch: pa.Table, ledger=None) -> pa.Table:
    decoded = DecodeStage(cfg, ledger)(batch)
    labelled = DeviceStage(cfg, ledger, threads=1)(decoded)
    return build_rows(labelled, SCHEMA_WITH_CAPTION)


def _without_timings(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "timings"} for r in rows]


@pytest.mark.parametrize("forward_batch", [1, 2])
def test_staged_rows_equal_single_stage_rows(cfg, forward_batch):
    """forward_batch 2: the two copies of photo.jpg (one padded size) share a forward pass."""
    cfg = dataclasses.replace(cfg, forward_batch=forward_batch)
    batch = _photos()
    single = Labeler(cfg, SCHEMA_WITH_CAPTION, None, threads=1)(batch)
    staged = _staged(cfg, batch)
    assert staged.schema.equals(single.schema, check_metadata=False)
    rows = staged.to_pylist()
    assert [r["status"] for r in rows] == ["ok", "error", "error", "ok", "ok"]
    assert [r["caption"] for r in rows] == ["c0", "c1", "c2", "c3", "c4"]
    assert _without_timings(rows) == _without_timings(single.to_pylist())
    assert rows[0]["device"] == "cpu" and rows[2]["device"] == "cpu"  # error rows carry provenance too
    assert set(rows[0]["timings"]) == set(single.to_pylist()[0]["timings"])
    assert rows[0]["persons"] == rows[4]["persons"]  # batched or not, a photo's result is its own


def test_forward_batch_keeps_each_photos_result(cfg):
    batch = _photos()
    one = _staged(dataclasses.replace(cfg, forward_batch=1), batch).to_pylist()
    two = _staged(dataclasses.replace(cfg, forward_batch=4), batch).to_pylist()
    assert _without_timings(one) == _without_timings(two)


def test_crash_ledger_in_both_stages(cfg):
    photo = good_files()["good/photo.jpg"][0]
    batch = _batch([("a.jpg", photo), ("b.jpg", photo), ("c.jpg", photo)])
    ledger = CrashLedger()
    assert ledger.begin_batch(["id0", "id1", "id2"]) == [0, 0, 0]
    assert ledger.begin_one("id1") == 1  # id1 killed two workers (in decode or on the device)
    rows = _staged(cfg, batch, ledger).to_pylist()
    assert [r["status"] for r in rows] == ["ok", "error", "ok"]
    assert rows[1]["error_kind"] == "worker_crash" and "2 times" in rows[1]["error"]
    assert rows[1]["checkpoint_sha256"] and ledger.size() == 0


def _job(**kw) -> JobSettings:
    return JobSettings.from_sources(None, {"input": "x", "output": "y", **kw})


def test_gpu_settings_are_checked_before_ray():
    assert _job(device="cuda", gpus_per_actor=0.25, cpus_per_actor=2).is_staged
    assert not _job().is_staged and _job(staged=True).is_staged
    assert _job(device="auto").engine.device == "cpu"
    assert _job(device="auto", gpus_per_actor=1).engine.device == "cuda"
    bad = [
        ({"device": "cuda"}, "device cuda needs gpus_per_actor > 0"),
        ({"gpus_per_actor": 1}, "reserves GPUs that device cpu never uses"),
        ({"device": "cuda:1", "gpus_per_actor": 1}, "use device: cuda"),
        ({"device": "cuda", "gpus_per_actor": 1.5}, "a fraction in"),
        ({"device": "cuda", "gpus_per_actor": -1}, "gpus_per_actor must be"),
        ({"device": "tpu"}, r"device \(--device\) must be one of"),
        ({"precision": "int4"}, r"precision \(--precision\)"),
        ({"stage_cpus": 0}, "stage_cpus must be > 0"),
    ]
    for values, message in bad:
        with pytest.raises(JobSettingsError, match=message):
            _job(**values)


def _node(cpus: float, gpus: float = 0) -> dict:
    return {"Alive": True, "Resources": {"CPU": cpus, **({"GPU": gpus} if gpus else {})}}


def test_the_pool_is_sized_by_gpus():
    gpu = _job(device="cuda", gpus_per_actor=0.5)
    assert staged_pool_size(gpu, [_node(16, 1)]) == 2  # two actors share the GPU; 14 CPUs for the CPU stages
    assert staged_pool_size(gpu, [_node(16, 2), _node(8, 1), _node(64)]) == 6
    assert staged_pool_size(dataclasses.replace(gpu, max_actors=3), [_node(16, 4)]) == 3
    assert staged_pool_size(_job(staged=True), [_node(2)]) == 1  # 2 CPUs: one actor, one CPU for the stages
    with pytest.raises(JobSettingsError, match="the Ray cluster has no GPU"):
        staged_pool_size(gpu, [_node(16)])
    with pytest.raises(JobSettingsError, match="no Ray node fits one device actor"):
        staged_pool_size(_job(staged=True), [_node(1)])
