"""``m2fp-batch report LABELS [--ground-truth GT_DIR] [--out FILE.html] [--human]``.

Prints one JSON summary on stdout (the files written and the report's numbers), like every other
subcommand; ``--human`` prints the same as a few lines of prose instead.
"""

from __future__ import annotations

import argparse
import json
import logging

__all__ = ["add_arguments", "main"]

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``m2fp-batch report``."""
    parser.add_argument(
        "labels", metavar="LABELS", help="a job output or export-reviewed directory (local; committed shards only)"
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
        help="the HTML report (default LABELS/report.html); FILE.md and FILE_plots/*.png are written beside it",
    )
    parser.add_argument("--human", action="store_true", help="print the summary as prose instead of JSON")


def _plain(value: object) -> object:
    """A numpy scalar as its Python value (json.dumps' ``default``)."""
    item = getattr(value, "item", None)
    if item is None:
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")
    return item()


def _prose(report) -> str:
    n = report.numbers
    lines = [
        f"report: {report.html_path}",
        f"summary: {report.markdown_path}",
        f"plots: {len(report.plot_paths)} PNG in {next(iter(report.plot_paths.values())).parent}",
        f"images {n['images']}, people {n['people']}, groups {n['group_counts']}",
    ]
    if report.ground_truth is not None:
        for _, r in report.ground_truth.summary.iterrows():
            lines.append(f"  {r['group']:>8}: mIoU {100 * r['mIoU']:.1f}%  gap {100 * r['gap']:.1f} pt")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Run ``m2fp-batch report``; 0 on success (errors: :mod:`m2fp_batch.errors`)."""
    from m2fp_batch.report import build_report

    report = build_report(args.labels, args.out, args.ground_truth)
    if args.human:
        print(_prose(report))
        return 0
    files = {"html": str(report.html_path), "markdown": str(report.markdown_path)}
    plots = {name: str(path) for name, path in report.plot_paths.items()}
    print(json.dumps({**files, "plots": plots, **report.numbers}, default=_plain))
    return 0
