"""Deprecated: renamed :mod:`m2fp_batch.photo_to_row` (``LabellingCore`` is ``PhotoToRow``)."""

from __future__ import annotations

import warnings

from m2fp_batch.photo_to_row import ENGINE_ERRORS, PROVENANCE_COLUMNS, Decoded, PhotoToRow, decode, provenance

warnings.warn(
    "m2fp_batch.labelling is renamed m2fp_batch.photo_to_row (LabellingCore: PhotoToRow); "
    "the old names go in the next release",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["ENGINE_ERRORS", "PROVENANCE_COLUMNS", "Decoded", "LabellingCore", "decode", "provenance"]

LabellingCore = PhotoToRow
