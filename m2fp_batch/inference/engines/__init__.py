"""Engines: the network's forward in PyTorch, ONNX Runtime or OpenVINO; preprocess and
postprocess are shared (:class:`m2fp_batch.inference.M2FPParser`).

``auto`` takes the first engine of :data:`AUTO_ORDER` whose package imports here: the order is
the measured speed order of ``benchmarks/bench_inference.py`` (docs/engine.md, "Engines"), and
every engine in it passes the parity check on the fixture (tests/test_parity.py).
"""

from __future__ import annotations

import importlib.util

from m2fp_batch.inference.engines.backends import Backend, OnnxRuntimeBackend, OpenVinoBackend, TorchBackend
from m2fp_batch.inference.engines.export import (
    EXPORT_FORMATS,
    ExportError,
    ExportManifest,
    cached_export,
    export_model,
    is_export_dir,
    read_manifest,
)
from m2fp_batch.inference.engines.load import LoadedEngine, open_engine
from m2fp_batch.settings import ENGINES

__all__ = [
    "AUTO_ORDER",
    "ENGINES",
    "EXPORT_FORMATS",
    "Backend",
    "ExportError",
    "ExportManifest",
    "LoadedEngine",
    "OnnxRuntimeBackend",
    "OpenVinoBackend",
    "TorchBackend",
    "cached_export",
    "export_model",
    "is_export_dir",
    "open_engine",
    "read_manifest",
    "resolve_engine",
]

# measured end to end at 640x640 on a quiet 2-core Zen 4 (docs/performance.md, "Engines"): torch fastest
AUTO_ORDER = ("torch", "openvino", "onnxruntime")


def resolve_engine(engine: str) -> str:
    """The concrete engine for ``engine`` (``auto``: the first of AUTO_ORDER that imports)."""
    if engine not in ENGINES:
        raise ExportError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
    if engine != "auto":
        return engine
    return next(e for e in AUTO_ORDER if e == "torch" or importlib.util.find_spec(e) is not None)
