"""Deprecated: renamed :mod:`m2fp_batch.inference.backends.quantize`."""

from __future__ import annotations

import warnings

from m2fp_batch.inference.backends.quantize import QUANTISED_OPS, quantize_int8

warnings.warn(
    "m2fp_batch.inference.engines.quantize is renamed m2fp_batch.inference.backends.quantize; "
    "the old name goes in the next release",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["QUANTISED_OPS", "quantize_int8"]
