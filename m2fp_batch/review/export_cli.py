"""``m2fp-batch export-reviewed NAME --out DIR``: reviewed labels back to Parquet (job schema + review_status)."""

from __future__ import annotations

import argparse
import json

from m2fp_batch.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``m2fp-batch export-reviewed``."""
    parser.add_argument("dataset", help="the FiftyOne review dataset (built by `m2fp-batch review`)")
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="local directory for the reviewed Parquet files (outside the job output)",
    )
    parser.add_argument(
        "--rows-per-file",
        type=int,
        default=5000,
        help="one Parquet file per source shard; a shard with more rows than this is split into NAME-000.parquet, "
        "NAME-001.parquet, ... (default 5000)",
    )


def main(args: argparse.Namespace) -> int:
    """Run ``m2fp-batch export-reviewed``; 0 on success (errors: :mod:`m2fp_batch.errors`)."""
    if args.rows_per_file < 1:
        raise UserError("--rows-per-file must be >= 1")
    from m2fp_batch.review.export import export_reviewed

    stats = export_reviewed(args.dataset, args.out, rows_per_file=args.rows_per_file)
    print(json.dumps({"dataset": args.dataset, **stats.to_dict()}))
    return 0
