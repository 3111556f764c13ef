"""``m2fp-batch cvat pull LABELS --cvat DIR --out REVIEWED``: CVAT's Segmentation mask 1.1 export back as reviewed labels.

The way there is ``m2fp-batch export LABELS --format cvat-mask --out DIR`` (upload DIR, zipped, to a
CVAT task with "Segmentation mask 1.1"); after the fixes, export the task in the same format,
unzip it, and pull. Prints a JSON summary; exit status 1 when some items could not be read.
"""

from __future__ import annotations

import argparse
import json

from m2fp_batch.reviewed.arguments import add_pull_arguments, rows_per_file

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``m2fp-batch cvat``."""
    sub = parser.add_subparsers(dest="action", required=True, metavar="pull")
    pull = sub.add_parser("pull", help="write a CVAT Segmentation mask 1.1 export in the export-reviewed layout")
    pull.add_argument("labels", metavar="LABELS", help="the job output the CVAT task was made from (local or s3://)")
    pull.add_argument("--cvat", required=True, metavar="DIR", help="the unzipped CVAT export (labelmap.txt, ...)")
    add_pull_arguments(pull, "rows the export lacks: keep them with the job's labels (not_in_dataset) or drop them")


def main(args: argparse.Namespace) -> int:
    """Run ``m2fp-batch cvat pull``; 0 on success, 1 when some items could not be read."""
    n = rows_per_file(args)
    from m2fp_batch.formats.cvat_pull import pull

    summary = pull(args.labels, args.cvat, args.out, unannotated=args.unannotated, rows_per_file=n)
    print(json.dumps(summary.to_dict()))
    return 1 if summary.errors else 0
