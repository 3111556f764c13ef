"""The ``openvino`` backend: an exported graph (ONNX or OpenVINO IR) compiled by OpenVINO's CPU plugin."""

from __future__ import annotations

from pathlib import Path

import torch

from m2fp_batch.backend_registry import EngineError, backend_entry
from m2fp_batch.inference.backends.base import graph_outputs
from m2fp_batch.inference.backends.graph import INPUT_NAME, OUTPUT_NAMES, ExportManifest

__all__ = ["OpenVinoBackend"]


class OpenVinoBackend:
    """An exported graph (ONNX or OpenVINO IR) compiled by OpenVINO's CPU plugin.

    Inference precision is float32 unless the export says bf16 (the plugin otherwise picks bf16
    by itself on CPUs that have it, which changes results: see docs/performance.md, "Engines")."""

    name = "openvino"

    def __init__(self, export_dir: Path, manifest: ExportManifest, threads: int | None = None) -> None:
        try:
            import openvino as ov
        except ImportError as e:
            raise EngineError(backend_entry(self.name).missing_message()) from e
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
            raise EngineError(f"OpenVINO cannot compile {export_dir / manifest.graph}: {str(e)[:300]}") from e
        self.request = self.compiled.create_infer_request()
        self.outputs = [self.compiled.output(name) for name in OUTPUT_NAMES]

    def __call__(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        result = self.request.infer({INPUT_NAME: batch.numpy()})
        out = graph_outputs([result[o] for o in self.outputs], copy=True)  # the buffers are released next
        # the plugin keeps its intermediate buffers after an inference (docs/performance.md, "Engines");
        # the postprocess at the photo's full size needs that memory
        del result
        self.compiled.release_memory()
        return out
