"""Run a subcommand's body as a process: its exit code, Ctrl-C, and the Ray it started stopped.

Every subcommand runs through :func:`run_command`. A user error (:func:`m2fp_batch.errors.user_message`
has a sentence for it) prints ``m2fp-batch CMD: <sentence>`` and exits 2; Ctrl-C prints a
sentence and exits 130 after stopping the Ray this process started; any other exception is a
bug: one sentence asking for ``-v`` and exit 1. The traceback is printed only with ``-v``.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable

from m2fp_batch.errors import one_sentence, user_message
from m2fp_batch.localray import stop_ray

__all__ = ["EXIT_BUG", "EXIT_INTERRUPTED", "EXIT_USER_ERROR", "run_command"]

EXIT_BUG = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def run_command(name: str, fn: Callable[[], int | None], verbose: bool = False) -> int:
    """Run ``fn`` (a subcommand's body) and map what it raises to a sentence and an exit code."""
    prog = f"m2fp-batch {name}"
    try:
        return int(fn() or 0)
    except KeyboardInterrupt:
        stop_ray()
        print(
            f"{prog}: interrupted (Ctrl-C); finished work is kept, and running the same command again resumes.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - the one place that maps every failure
        stop_ray()
        if verbose:
            traceback.print_exc()
        msg = user_message(e)
        if msg is not None:
            print(f"{prog}: {msg}", file=sys.stderr)
            return EXIT_USER_ERROR
        print(
            f"{prog}: internal error {type(e).__name__}: {one_sentence(str(e))} "
            "(run again with -v for the traceback, and please report it).",
            file=sys.stderr,
        )
        return EXIT_BUG
