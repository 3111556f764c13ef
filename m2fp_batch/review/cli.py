"""``m2fp-batch review LABELS --dataset NAME [--launch]``: build/update the review dataset, open the App.

FiftyOne is imported only when the command runs. The database is FiftyOne's bundled MongoDB
(``FIFTYONE_DATABASE_DIR``, default ``~/.fiftyone/var/lib/mongo``) unless ``FIFTYONE_DATABASE_URI``
points to another ``mongod``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal

from m2fp_batch.errors import UserError
from m2fp_batch.review.arguments import add_low_score_argument, low_score

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``m2fp-batch review``."""
    parser.add_argument(
        "labels",
        nargs="?",
        metavar="LABELS",
        help="the job output to import or update (local); omit it with --launch to only open the App",
    )
    parser.add_argument(
        "--dataset",
        required=True,
        help="FiftyOne dataset name (persistent; created or updated); the videos go to the video dataset NAME-videos",
    )
    parser.add_argument("--mask-dir", help="where the mask PNGs go (default LABELS/_review/masks)")
    parser.add_argument(
        "--image-root",
        metavar="DIR",
        help="local base for relative image uris; an s3://bucket/key image is read from DIR/bucket/key",
    )
    add_low_score_argument(parser)
    parser.add_argument(
        "--overwrite-reviewed",
        action="store_true",
        help="also replace the labels of samples tagged reviewed/rejected (default: keep the reviewers' work)",
    )
    parser.add_argument(
        "--launch", action="store_true", help="then open the FiftyOne App on 127.0.0.1:PORT and wait (Ctrl-C ends)"
    )
    parser.add_argument("--port", type=int, default=5151, help="App port on 127.0.0.1 (default 5151)")
    parser.add_argument(
        "--view", help="with --launch: open this saved view (review-queue, errors, low-confidence, skin-dark, ...)"
    )


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _check_arguments(args: argparse.Namespace) -> None:
    """Refuse flag values that cannot work, before FiftyOne starts (raises :class:`UserError`)."""
    if args.labels is None and not args.launch:
        raise UserError("give the job output DIR, or --launch to open an existing dataset")
    low_score(args)
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be 1..65535, got {args.port}")


def main(args: argparse.Namespace) -> int:
    """Run ``m2fp-batch review``; 0 on success (errors: :mod:`m2fp_batch.errors`)."""
    _check_arguments(args)
    if args.labels is not None:
        from m2fp_batch.review.build import build_review_dataset

        _, stats = build_review_dataset(
            args.labels,
            args.dataset,
            mask_dir=args.mask_dir,
            image_root=args.image_root,
            low_score=args.low_score,
            overwrite_reviewed=args.overwrite_reviewed,
        )
        print(json.dumps({"dataset": args.dataset, **stats.to_dict()}))
    if args.launch:
        from m2fp_batch.review.app import launch

        session = launch(args.dataset, port=args.port, view=args.view)
        print(json.dumps({"dataset": args.dataset, "app": f"http://127.0.0.1:{args.port}/"}), flush=True)
        log.info("App on http://127.0.0.1:%d/ (Ctrl-C to stop)", args.port)
        # SIGTERM exits like Ctrl-C, so FiftyOne's exit handlers stop the App server process too
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            session.wait(-1)
        except KeyboardInterrupt:
            log.info("App stopped")
        finally:
            session.close()
    return 0
