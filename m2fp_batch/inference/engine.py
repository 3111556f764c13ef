"""Deprecated: renamed :mod:`m2fp_batch.inference.parser` (``M2FPParser``)."""

from __future__ import annotations

import warnings

from m2fp_batch.inference.parser import M2FPParser

warnings.warn(
    "m2fp_batch.inference.engine is renamed m2fp_batch.inference.parser; the old name goes in the next release",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["M2FPParser"]
