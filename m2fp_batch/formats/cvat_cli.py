"""``m2fp-batch cvat pull OUT --cvat DIR --out REVIEWED``: CVAT's Segmentation mask 1.1 export back as reviewed labels.

The way there is ``m2fp-batch export OUT --format cvat-mask --out DIR`` (upload DIR, zipped, to a
CVAT task with "Segmentation mask 1.1"); after the fixes, export the task in the same format,
unzip it, and pull. Prints a JSON summary; exit status 1 when some items could not be read.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from m2fp_batch.errors import UserError

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``m2fp-batch cvat``."""
    from m2fp_batch.review.reviewed import add_pull_arguments

    sub = parser.add_subparsers(dest="action", required=True, metavar="pull")
    pull = sub.add_parser("pull", help="write a CVAT Segmentation mask 1.1 export in the export-reviewed layout")
    pull.add_argument("output", metavar="OUT", help="the job output the CVAT task was made from (local or s3://)")
    pull.add_argument("--cvat", required=True, metavar="DIR", help="the unzipped CVAT export (labelmap.txt, ...)")
    add_pull_arguments(pull, "rows the export lacks: keep them with the job's labels (not_in_dataset) or drop them")


def main(args: argparse.Namespace) -> int:
    """Run ``m2fp-batch cvat pull``; 0 on success, 1 when some items could not be read."""
    from m2fp_batch.formats.cvat_pull import pull

    if args.rows_per_file < 1:
        raise UserError(f"--rows-per-file must be >= 1, got {args.rows_per_file}")
    summary = pull(args.output, args.cvat, args.out, unannotated=args.unannotated, rows_per_file=args.rows_per_file)
    print(json.dumps(asdict(summary)))
    return 1 if summary.errors else 0
