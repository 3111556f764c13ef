"""Deprecated: one module per backend under :mod:`m2fp_batch.inference.backends`."""

from __future__ import annotations

import warnings

from m2fp_batch.inference.backends.base import Backend
from m2fp_batch.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
from m2fp_batch.inference.backends.openvino_backend import OpenVinoBackend
from m2fp_batch.inference.backends.torch_backend import TorchBackend

warnings.warn(
    "m2fp_batch.inference.engines.backends is split into m2fp_batch.inference.backends.base, "
    ".torch_backend, .onnxruntime_backend and .openvino_backend; the old name goes in the next release",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["Backend", "OnnxRuntimeBackend", "OpenVinoBackend", "TorchBackend"]
