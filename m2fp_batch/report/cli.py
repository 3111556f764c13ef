"""``m2fp-batch report DIR [--ground-truth GT_DIR] [--out FILE.html]``."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "output", metavar="DIR", help="a job output or export-reviewed directory (local; committed shards only)"
    )
    parser.add_argument(
        "--ground-truth",
        metavar="GT_DIR",
        help="CIHP-style label PNGs named <image_id>.png (class ids 0..19): adds IoU per class and mIoU per "
        "skin-tone group with the gap to the best group",
    )
    parser.add_argument(
        "--out",
        metavar="FILE.html",
        help="the HTML report (default DIR/report.html); FILE.md and FILE_plots/*.png are written beside it",
    )


def main(args: argparse.Namespace) -> int:
    from m2fp_batch.report import build_report

    report = build_report(args.output, args.out, args.ground_truth)
    n = report.numbers
    print(f"report: {report.html_path}")
    print(f"summary: {report.markdown_path}")
    print(f"plots: {len(report.plot_paths)} PNG in {next(iter(report.plot_paths.values())).parent}")
    print(f"images {n['images']}, people {n['people']}, groups {n['group_counts']}")
    if report.ground_truth is not None:
        for _, r in report.ground_truth.summary.iterrows():
            print(f"  {r['group']:>8}: mIoU {100 * r['mIoU']:.1f}%  gap {100 * r['gap']:.1f} pt")
    return 0
