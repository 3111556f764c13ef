"""Deprecated: renamed :mod:`m2fp_batch.inference.backends.load`."""

from __future__ import annotations

import warnings

from m2fp_batch.inference.backends.load import LoadedEngine, open_engine

warnings.warn(
    "m2fp_batch.inference.engines.load is renamed m2fp_batch.inference.backends.load; "
    "the old name goes in the next release",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["LoadedEngine", "open_engine"]
