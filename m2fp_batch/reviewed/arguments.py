"""The flags every writer of the reviewed layout shares, each defined and checked once."""

from __future__ import annotations

import argparse

from m2fp_batch.errors import UserError
from m2fp_batch.reviewed.layout import UNANNOTATED

__all__ = ["DEFAULT_ROWS_PER_FILE", "add_pull_arguments", "add_rows_per_file_argument", "rows_per_file"]

DEFAULT_ROWS_PER_FILE = 5000


def add_rows_per_file_argument(parser: argparse.ArgumentParser) -> None:
    """``--rows-per-file`` (check it with :func:`rows_per_file`)."""
    parser.add_argument(
        "--rows-per-file",
        type=int,
        default=DEFAULT_ROWS_PER_FILE,
        help="one Parquet file per source shard; a shard with more rows than this is split into NAME-000.parquet, "
        f"NAME-001.parquet, ... (default {DEFAULT_ROWS_PER_FILE})",
    )


def rows_per_file(args: argparse.Namespace) -> int:
    """``--rows-per-file``, checked.

    Raises:
        UserError: it is below 1.
    """
    if args.rows_per_file < 1:
        raise UserError(f"--rows-per-file must be >= 1, got {args.rows_per_file}")
    return args.rows_per_file


def add_pull_arguments(parser: argparse.ArgumentParser, unannotated_help: str) -> None:
    """What every review tool's ``pull`` writes: ``--out`` (the reviewed dir), ``--unannotated``
    (the rule for rows without a verdict) and ``--rows-per-file``."""
    parser.add_argument("--out", required=True, metavar="DIR", help="the reviewed dir (outside the job output)")
    parser.add_argument("--unannotated", choices=UNANNOTATED, default="keep", help=unannotated_help)
    add_rows_per_file_argument(parser)
