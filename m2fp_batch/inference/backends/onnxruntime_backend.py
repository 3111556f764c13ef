"""The ``onnxruntime`` backend: an exported ONNX graph in ONNX Runtime's CPU execution provider."""

from __future__ import annotations

from pathlib import Path

import torch

from m2fp_batch.backend_registry import EngineError, backend_entry
from m2fp_batch.inference.backends.base import graph_outputs
from m2fp_batch.inference.backends.graph import INPUT_NAME, OUTPUT_NAMES, ExportManifest

__all__ = ["OnnxRuntimeBackend"]


class OnnxRuntimeBackend:
    """An exported ONNX graph in ONNX Runtime's CPU execution provider."""

    name = "onnxruntime"

    def __init__(self, export_dir: Path, manifest: ExportManifest, threads: int | None = None) -> None:
        if manifest.format != "onnx":
            raise EngineError(
                f"{export_dir} holds an {manifest.format} export; the onnxruntime engine reads ONNX exports"
            )
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise EngineError(backend_entry(self.name).missing_message()) from e
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
        return graph_outputs(self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch.numpy()}))
