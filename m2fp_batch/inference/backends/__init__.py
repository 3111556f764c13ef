"""Backends: the network's forward in PyTorch, ONNX Runtime or OpenVINO; preprocess and
postprocess are shared (:class:`m2fp_batch.inference.M2FPParser`).

One module per backend (``torch_backend``, ``onnxruntime_backend``, ``openvino_backend``), each
described by one entry of :mod:`m2fp_batch.backend_registry` (name, ``auto`` rank, export format,
loader, package); ``graph`` is an export dir's contract, ``export`` writes one (and the export
cache), ``quantize`` makes it int8, ``load`` opens a backend for a model.
"""

from __future__ import annotations

from m2fp_batch.backend_registry import BACKENDS, ENGINES, BackendEntry, EngineError, resolve_engine
from m2fp_batch.inference.backends.base import Backend
from m2fp_batch.inference.backends.export import EXPORT_FORMATS, cached_export, export_model
from m2fp_batch.inference.backends.graph import ExportError, ExportManifest, is_export_dir, read_manifest
from m2fp_batch.inference.backends.load import LoadedEngine, open_engine
from m2fp_batch.inference.backends.torch_backend import TorchBackend

__all__ = [
    "BACKENDS",
    "ENGINES",
    "EXPORT_FORMATS",
    "Backend",
    "BackendEntry",
    "EngineError",
    "ExportError",
    "ExportManifest",
    "LoadedEngine",
    "TorchBackend",
    "cached_export",
    "export_model",
    "is_export_dir",
    "open_engine",
    "read_manifest",
    "resolve_engine",
]
