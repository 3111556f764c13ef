"""``--low-score``: what every review tool means by a low-confidence row, defined and checked once (no FiftyOne)."""

from __future__ import annotations

import argparse

from m2fp_batch.errors import UserError
from m2fp_batch.review.convert import DEFAULT_LOW_SCORE

__all__ = ["add_low_score_argument", "low_score"]


def add_low_score_argument(parser: argparse.ArgumentParser) -> None:
    """``--low-score`` (check it with :func:`low_score`)."""
    parser.add_argument(
        "--low-score",
        type=float,
        default=DEFAULT_LOW_SCORE,
        help="a person or part score below this makes the row low-confidence: the low_confidence tag and the "
        f"low-confidence view (default {DEFAULT_LOW_SCORE})",
    )


def low_score(args: argparse.Namespace) -> float:
    """``--low-score``, checked.

    Raises:
        UserError: it is outside [0, 1].
    """
    if not 0.0 <= args.low_score <= 1.0:
        raise UserError(f"--low-score must be in [0, 1], got {args.low_score}")
    return args.low_score
