"""``m2fp-batch`` command line: one subcommand per area, each defined next to its code.

Each subcommand module provides ``add_arguments(parser)`` and ``main(args) -> int``; they
are imported only when their subcommand runs (``--help`` imports them all), so ``parse``
never imports Ray or FiftyOne.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "parse": ("m2fp_batch.inference.cli", "parse photos and write colour-coded parses (single-photo view)"),
    "run": ("m2fp_batch.pipeline.cli", "label an image store with a Ray job, writing Parquet"),
    "report": ("m2fp_batch.report.cli", "skin-tone / fairness report of a job output"),
    "review": ("m2fp_batch.review.cli", "build or update the FiftyOne review dataset from a job output"),
    "export-reviewed": ("m2fp_batch.review.export_cli", "write reviewed FiftyOne labels back to Parquet"),
    "export": ("m2fp_batch.formats.cli", "export the labels as a CIHP-layout, COCO or CVAT-mask dataset"),
    "label-studio": ("m2fp_batch.labelstudio.cli", "review in Label Studio: push pre-annotations, pull the fixes"),
    "cvat": ("m2fp_batch.formats.cvat_cli", "read a CVAT Segmentation mask 1.1 export back as reviewed labels"),
    "serve": ("m2fp_batch.serve.cli", "the web page and POST /api/parse on Ray Serve"),
    "train": ("m2fp_batch.train.cli", "fine-tune M2FP on labelled dirs (Ray Train, skin-tone aware)"),
    "export-model": ("m2fp_batch.inference.export_cli", "export the network to ONNX or OpenVINO IR (dynamic sizes)"),
    "evaluate": ("m2fp_batch.train.evaluate_cli", "mIoU overall, per class and per skin-tone group on labelled dirs"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="m2fp-batch", description="M2FP human parsing at scale")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if only is None or only == name:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in SUBCOMMANDS), None)
    only = command if command and "-h" not in argv and "--help" not in argv[: argv.index(command)] else None
    args = build_parser(only).parse_args(argv)
    from m2fp_batch.command import run_command
    from m2fp_batch.logs import configure_logging

    configure_logging(args.verbose)

    return run_command(
        args.command,
        lambda: importlib.import_module(SUBCOMMANDS[args.command][0]).main(args),
        verbose=args.verbose,
    )


if __name__ == "__main__":
    sys.exit(main())
