"""Deprecated: renamed :mod:`m2fp_batch.inference.backends` (the registry: :mod:`m2fp_batch.backend_registry`).

Kept for one release; importing it warns.
"""

from __future__ import annotations

import warnings

from m2fp_batch.backend_registry import BACKENDS, ENGINES, resolve_engine
from m2fp_batch.inference.backends import (
    EXPORT_FORMATS,
    Backend,
    ExportError,
    ExportManifest,
    LoadedEngine,
    TorchBackend,
    cached_export,
    export_model,
    is_export_dir,
    open_engine,
    read_manifest,
)
from m2fp_batch.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
from m2fp_batch.inference.backends.openvino_backend import OpenVinoBackend

warnings.warn(
    "m2fp_batch.inference.engines is renamed m2fp_batch.inference.backends; the old name goes in the next release",
    DeprecationWarning,
    stacklevel=2,
)

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

# the old name of the registry's auto order
AUTO_ORDER = tuple(b.name for b in sorted(BACKENDS, key=lambda b: b.auto_rank))
