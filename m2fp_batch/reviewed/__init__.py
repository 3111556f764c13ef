"""The reviewed layout that every review tool writes (``export-reviewed``, ``label-studio pull``,
``cvat pull``): rows and files, no FiftyOne, no side effect on import.

One Parquet file per source file of the job output, the job's columns plus four, and
``_export.json`` last (:mod:`.layout`):

* ``review_status``: ``reviewed``, ``rejected``, ``unreviewed`` (in the tool, no verdict yet) or
  ``not_in_dataset`` (never sent to the tool); the job's labels are kept for the last three
  (the words: ``m2fp_batch.schema.REVIEW_STATUSES``);
* ``review_edited``: whether the labels differ from the job's;
* ``review_by`` / ``review_time``: who gave the verdict and when (ISO 8601), null when unknown.

A tool turns each job row into its reviewed row with :func:`finish_row` (:mod:`.rows`), and
reports what it wrote as one :class:`ReviewedSummary`.
"""

from __future__ import annotations

from m2fp_batch.reviewed.layout import (
    REVIEW_COLUMNS,
    REVIEW_FIELDS,
    UNANNOTATED,
    ReviewedSummary,
    check_destination,
    output_schema,
    review_source,
    write_reviewed,
)
from m2fp_batch.reviewed.rows import (
    ADDED_PERSON_SCORE,
    UNKNOWN_SKIN_TONE,
    ReviewRowError,
    build_person,
    finish_row,
    patched_semantic,
    person_mask,
    refresh_summary,
    semantic_entries,
    signature,
)

__all__ = [
    "ADDED_PERSON_SCORE",
    "REVIEW_COLUMNS",
    "REVIEW_FIELDS",
    "UNANNOTATED",
    "UNKNOWN_SKIN_TONE",
    "ReviewRowError",
    "ReviewedSummary",
    "build_person",
    "check_destination",
    "finish_row",
    "output_schema",
    "patched_semantic",
    "person_mask",
    "refresh_summary",
    "review_source",
    "semantic_entries",
    "signature",
    "write_reviewed",
]
