"""``m2fp-batch export LABELS --format cihp|coco|cvat-mask|vip --out DIR [--split NAME]``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict

__all__ = ["add_arguments", "main"]

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``m2fp-batch export``."""
    from m2fp_batch.formats.export import FORMATS

    parser.add_argument("labels", metavar="LABELS", help="a job output or export-reviewed dir (local or s3://)")
    parser.add_argument(
        "--format",
        required=True,
        choices=FORMATS,
        help="cihp: the CIHP release layout; coco: one COCO JSON; cvat-mask: CVAT's Segmentation mask 1.1; "
        "vip: the VIP video layout (video frames only, per-video folders, human ids = track ids)",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="local dataset directory, written aside and renamed into place (a rerun replaces it)",
    )
    parser.add_argument("--split", default="train", help="split name: <split>_id.txt / <split>.json (default train)")
    # Deprecated (it accepted only "no": error rows carry no labels and are always skipped and counted);
    # still read for one release so that scripts passing `--include-errors no` keep working.
    parser.add_argument("--include-errors", help=argparse.SUPPRESS)


def _deprecated_include_errors(value: str | None) -> None:
    from m2fp_batch.formats.export import FormatExportError

    if value is None:
        return
    if value != "no":
        raise FormatExportError(
            "--include-errors accepts only 'no' and is deprecated: error rows have no labels to export "
            "(they are skipped and counted in export.json); drop the flag"
        )
    log.warning("--include-errors is deprecated and changes nothing (error rows are never exported): drop it")


def main(args: argparse.Namespace) -> int:
    """Run ``m2fp-batch export``; 0 on success, 1 when some photos could not be read (errors: m2fp_batch.errors)."""
    from m2fp_batch.formats.export import export

    _deprecated_include_errors(args.include_errors)
    summary = export(args.labels, args.out, args.format, args.split)
    print(json.dumps(asdict(summary)))
    if summary.unreadable_images:
        print(
            f"m2fp-batch export: {len(summary.unreadable_images)} image(s) could not be read from their uri and "
            f"were left out (e.g. {summary.unreadable_images[0]}); the rest was exported",
            file=sys.stderr,
        )
        return 1
    return 0
