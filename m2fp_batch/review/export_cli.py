"""``m2fp-batch export-reviewed DATASET --out DIR``: reviewed labels back to Parquet (job schema + review_status)."""

from __future__ import annotations

import argparse
import json

from m2fp_batch.reviewed.arguments import add_rows_per_file_argument, rows_per_file

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``m2fp-batch export-reviewed``."""
    parser.add_argument("dataset", metavar="DATASET", help="the FiftyOne review dataset (built by `m2fp-batch review`)")
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="local directory for the reviewed Parquet files (outside the job output)",
    )
    add_rows_per_file_argument(parser)


def main(args: argparse.Namespace) -> int:
    """Run ``m2fp-batch export-reviewed``; 0 on success (errors: :mod:`m2fp_batch.errors`)."""
    n = rows_per_file(args)
    from m2fp_batch.review.export import export_reviewed

    print(json.dumps(export_reviewed(args.dataset, args.out, rows_per_file=n).to_dict()))
    return 0
