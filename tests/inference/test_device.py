"""Where the engine runs and in which precision (EngineSettings.device / precision).

On the CPU: the device is resolved (auto -> cpu without CUDA, cuda -> one sentence), bf16 autocast
runs and stays close to fp32, the device reaches every row. Tests marked ``gpu`` run the same code
on CUDA and skip only where torch sees no CUDA device (CI has none): CUDA fp32 against the CPU, bf16
and fp16, a real CUDA out-of-memory error on one photo (retried alone, then an error row, the engine
lives on), and the staged stages on the GPU.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image
from skimage import data

from m2fp_batch.inference import M2FPParser
from m2fp_batch.inference.device import DeviceError, resolve_device
from m2fp_batch.photo_to_row import PhotoToRow
from m2fp_batch.settings import EngineSettings

CUDA = torch.cuda.is_available()


def _settings(tiny_model_dir, **kw) -> EngineSettings:
    return EngineSettings(model=str(tiny_model_dir), short_edge=256, max_size=512, threads=1, **kw)


def _agreement(a, b) -> float:
    return float(np.mean(a.semantic == b.semantic))


def test_devices_resolve_and_cuda_without_cuda_is_one_sentence():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if CUDA else "cpu")
    if CUDA:
        with pytest.raises(DeviceError, match="CUDA GPU"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(DeviceError, match="sees no CUDA GPU; use --device cpu"):
            resolve_device("cuda:0")


def test_bf16_autocast_on_the_cpu_is_close_to_fp32(tiny_model_dir, astronaut):
    fp32 = M2FPParser.from_settings(_settings(tiny_model_dir)).parse_one(astronaut)
    bf16 = M2FPParser.from_settings(_settings(tiny_model_dir, precision="bf16")).parse_one(astronaut)
    assert bf16.semantic.shape == fp32.semantic.shape and bf16.semantic.dtype == np.uint8
    assert _agreement(bf16, fp32) > 0.8  # measured 0.95 on the tiny model (benchmarks/bench_gpu.py --tiny)
    assert _settings(tiny_model_dir, precision="bf16").label_hash() != _settings(tiny_model_dir).label_hash()


def test_rows_record_the_device(tiny_model_dir):
    core = PhotoToRow.load(_settings(tiny_model_dir))
    assert core.provenance["device"] == "cpu"
    assert core.provenance["config_hash"] == dataclasses.replace(core.settings, device="cuda").label_hash()


# ------------------------------------------------------------------ on CUDA
@pytest.mark.gpu
def test_cuda_fp32_equals_the_cpu(tiny_model_dir, astronaut):
    cpu = M2FPParser.from_settings(_settings(tiny_model_dir)).parse_one(astronaut)
    gpu_parser = M2FPParser.from_settings(_settings(tiny_model_dir, device="cuda"))
    gpu = gpu_parser.parse_one(astronaut)
    assert gpu_parser.device.type == "cuda" and not torch.backends.cudnn.allow_tf32
    assert _agreement(gpu, cpu) > 0.999 and len(gpu.persons) == len(cpu.persons)
    np.testing.assert_allclose(gpu.pred_logits, cpu.pred_logits, atol=1e-3, rtol=1e-3)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_autocast(tiny_model_dir, astronaut, precision):
    fp32 = M2FPParser.from_settings(_settings(tiny_model_dir, device="cuda")).parse_one(astronaut)
    low = M2FPParser.from_settings(_settings(tiny_model_dir, device="cuda", precision=precision)).parse_one(astronaut)
    assert _agreement(low, fp32) > 0.8


@pytest.mark.gpu
def test_cuda_out_of_memory_on_one_photo_becomes_its_error_row(tiny_model_dir, astronaut):
    """A real oversize allocation: the process may use only a little more than the model holds,
    so the 24-megapixel photo's full-size postprocess fails; the small photo beside it does not,
    and the engine labels again afterwards."""
    core = PhotoToRow.load(dataclasses.replace(_settings(tiny_model_dir, device="cuda"), max_pixels=10**9))
    small = astronaut
    big = np.asarray(Image.fromarray(astronaut).resize((6000, 4000)))
    core.infer([small])
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction((torch.cuda.memory_reserved() + 64 * 2**20) / total)
    try:
        outcomes = core.infer([small, big])
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert not isinstance(outcomes[0], BaseException)
    assert isinstance(outcomes[1], torch.OutOfMemoryError)
    label = core.label(big, outcomes[1], 1.0)
    assert label["error_kind"] == "inference_error" and "OutOfMemoryError" in label["error"]
    assert not isinstance(core.infer([small])[0], BaseException)


@pytest.mark.gpu
def test_staged_stages_on_cuda_record_the_gpu(tiny_model_dir):
    from m2fp_batch.pipeline.config import JobSettings
    from m2fp_batch.pipeline.staged import DecodeStage, DeviceStage, build_rows
    from m2fp_batch.schema import SCHEMA

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, format="JPEG")
    batch = pa.table(
        {
            "image_id": ["a", "b"],
            "uri": ["a.jpg", "b.jpg"],
            "shard": pa.array([0, 0], pa.int32()),
            "data": pa.array([buf.getvalue()] * 2, pa.large_binary()),
            "read_error": pa.array([None, None], pa.string()),
            "read_error_kind": pa.array([None, None], pa.string()),
            "read_s": [0.0, 0.0],
        }
    )
    rows = {}
    for device, gpus in (("cpu", 0), ("cuda", 1)):
        cfg = JobSettings(input="x", output="y", engine=_settings(tiny_model_dir, device=device), gpus_per_actor=gpus)
        stage = DeviceStage(dataclasses.replace(cfg, forward_batch=2), None, threads=1)
        rows[device] = build_rows(stage(DecodeStage(cfg, None)(batch)), SCHEMA).to_pylist()
    assert [r["device"] for r in rows["cuda"]] == ["cuda:0", "cuda:0"]
    assert [r["status"] for r in rows["cuda"]] == ["ok", "ok"]
    assert [r["num_persons"] for r in rows["cuda"]] == [r["num_persons"] for r in rows["cpu"]]
