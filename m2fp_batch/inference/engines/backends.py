"""One network forward per engine: a preprocessed batch (N, 3, Hp, Wp) float32 in, the raw
outputs the shared postprocess takes out (``pred_logits`` (N, Q, K+1), ``pred_masks``
(N, Q, Hp/4, Wp/4), float32 torch tensors)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from m2fp_batch.inference.engines.export import INPUT_NAME, OUTPUT_NAMES, ExportError, ExportManifest
from m2fp_batch.model import M2FP

log = logging.getLogger(__name__)

__all__ = ["Backend", "OnnxRuntimeBackend", "OpenVinoBackend", "TorchBackend"]


class Backend(Protocol):
    """The network's forward, loaded once per process (actor, replica)."""

    name: str

    def __call__(self, batch: torch.Tensor) -> dict[str, torch.Tensor]: ...


class TorchBackend:
    """The eager PyTorch network (the reference engine)."""

    name = "torch"

    def __init__(self, net: M2FP, channels_last: bool = False) -> None:
        self.net = net.eval()
        self.channels_last = channels_last

    def __call__(self, batch: torch.Tensor, keep_aux: bool = False) -> dict:
        with torch.inference_mode():
            if self.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            return self.net(batch, keep_aux=keep_aux)


def _outputs(values: list[np.ndarray], copy: bool = False) -> dict[str, torch.Tensor]:
    """The engine's outputs as float32 torch tensors; ``copy`` when the engine will reuse or free
    the arrays' memory."""
    return {
        name: torch.from_numpy(np.array(v, dtype=np.float32, order="C", copy=True if copy else None))
        for name, v in zip(OUTPUT_NAMES, values)
    }


class OnnxRuntimeBackend:
    """An exported ONNX graph in ONNX Runtime's CPU execution provider."""

    name = "onnxruntime"

    def __init__(self, export_dir: Path, manifest: ExportManifest, threads: int | None = None) -> None:
        if manifest.format != "onnx":
            raise ExportError(
                f"{export_dir} holds an {manifest.format} export; the onnxruntime engine reads ONNX exports"
            )
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ExportError("--engine onnxruntime needs 'onnxruntime': pip install 'm2fp-batch[engines]'") from e
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or 0
        opts.inter_op_num_threads = 1
        # every photo size is a new shape: no memory pattern, and no arena that keeps the largest
        # photo's buffers for the rest of the process (the actor's 2 GB budget)
        opts.enable_mem_pattern = False
        opts.enable_cpu_mem_arena = False
        opts.log_severity_level = 3
        self.graph_path = export_dir / manifest.graph
        self.options = opts
        self.session = ort.InferenceSession(str(self.graph_path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return _outputs(self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch.numpy()}))


class OpenVinoBackend:
    """An exported graph (ONNX or OpenVINO IR) compiled by OpenVINO's CPU plugin.

    Inference precision is float32 unless the export says bf16 (the plugin otherwise picks bf16
    by itself on CPUs that have it, which changes results: measured 1.9 logit difference)."""

    name = "openvino"

    def __init__(self, export_dir: Path, manifest: ExportManifest, threads: int | None = None) -> None:
        try:
            import openvino as ov
        except ImportError as e:
            raise ExportError("--engine openvino needs 'openvino': pip install 'm2fp-batch[engines]'") from e
        config = {
            "INFERENCE_PRECISION_HINT": "bf16" if manifest.precision == "bf16" else "f32",
            "PERFORMANCE_HINT": "LATENCY",
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        core = ov.Core()
        try:
            self.compiled = core.compile_model(str(export_dir / manifest.graph), "CPU", config)
        except RuntimeError as e:
            raise ExportError(f"OpenVINO cannot compile {export_dir / manifest.graph}: {str(e)[:300]}") from e
        self.request = self.compiled.create_infer_request()
        self.outputs = [self.compiled.output(name) for name in OUTPUT_NAMES]

    def __call__(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        result = self.request.infer({INPUT_NAME: batch.numpy()})
        out = _outputs([result[o] for o in self.outputs], copy=True)  # the buffers are released next
        # the plugin keeps its intermediate buffers (~1 GB at 640x960) after an inference; the
        # postprocess at the photo's full size needs that memory (docs/performance.md, Engines)
        del result
        self.compiled.release_memory()
        return out
