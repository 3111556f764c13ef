"""Deprecated: :mod:`m2fp_batch.inference.backends.export` and :mod:`~m2fp_batch.inference.backends.graph`."""

from __future__ import annotations

import warnings

from m2fp_batch.inference.backends.export import (
    ENGINE_CACHE_ENV,
    EXPORT_FORMATS,
    OPSET,
    cached_export,
    check_precision,
    default_cache_dir,
    export_model,
    onnx_to_openvino,
)
from m2fp_batch.inference.backends.graph import (
    INPUT_NAME,
    MANIFEST_NAME,
    OUTPUT_NAMES,
    ExportError,
    ExportManifest,
    is_export_dir,
    read_manifest,
)

warnings.warn(
    "m2fp_batch.inference.engines.export is renamed m2fp_batch.inference.backends.export (the manifest: "
    "backends.graph); the old name goes in the next release",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "ENGINE_CACHE_ENV",
    "EXPORT_FORMATS",
    "INPUT_NAME",
    "MANIFEST_NAME",
    "OPSET",
    "OUTPUT_NAMES",
    "ExportError",
    "ExportManifest",
    "cached_export",
    "check_precision",
    "default_cache_dir",
    "export_model",
    "is_export_dir",
    "onnx_to_openvino",
    "read_manifest",
]
