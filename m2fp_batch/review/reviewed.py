"""Deprecated: the reviewed layout moved to :mod:`m2fp_batch.reviewed` (this path goes in the next release)."""

from __future__ import annotations

import warnings

from m2fp_batch.reviewed import (
    ADDED_PERSON_SCORE,
    REVIEW_COLUMNS,
    REVIEW_FIELDS,
    UNANNOTATED,
    UNKNOWN_SKIN_TONE,
    ReviewedSummary,
    ReviewRowError,
    build_person,
    check_destination,
    output_schema,
    patched_semantic,
    person_mask,
    refresh_summary,
    review_source,
    signature,
    write_reviewed,
)
from m2fp_batch.reviewed.arguments import add_pull_arguments
from m2fp_batch.schema import NOT_IN_DATASET, REJECTED, REVIEW_STATUSES, REVIEWED, UNREVIEWED

warnings.warn(
    "m2fp_batch.review.reviewed is deprecated: import m2fp_batch.reviewed (statuses: m2fp_batch.schema)",
    DeprecationWarning,
    stacklevel=2,
)

STATUS_REVIEWED, STATUS_REJECTED, STATUS_UNREVIEWED, STATUS_NOT_IN_DATASET = (
    REVIEWED,
    REJECTED,
    UNREVIEWED,
    NOT_IN_DATASET,
)
ReviewedStats = ReviewedSummary

__all__ = [
    "ADDED_PERSON_SCORE",
    "REVIEW_COLUMNS",
    "REVIEW_FIELDS",
    "REVIEW_STATUSES",
    "STATUS_NOT_IN_DATASET",
    "STATUS_REJECTED",
    "STATUS_REVIEWED",
    "STATUS_UNREVIEWED",
    "UNANNOTATED",
    "UNKNOWN_SKIN_TONE",
    "ReviewRowError",
    "ReviewedStats",
    "add_pull_arguments",
    "build_person",
    "check_destination",
    "output_schema",
    "patched_semantic",
    "person_mask",
    "refresh_summary",
    "review_source",
    "signature",
    "write_reviewed",
]
