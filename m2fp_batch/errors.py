"""One place that turns exceptions into what a user reads: one sentence and an exit code.

Every subcommand runs through :func:`run_command`. A user error (bad settings, bad input, bad
model, unreachable storage, a refused resume) prints ``m2fp-batch CMD: <sentence>`` and exits
2; Ctrl-C prints a sentence and exits 130 after stopping the Ray this process started; any
other exception is a bug: one sentence asking for ``-v`` and exit 1. The traceback is printed
only with ``-v``.

Our own user errors are the subclasses of :class:`UserError` (matched with ``isinstance``);
the standard library's and pyarrow's errors that a user causes (a missing file, a file that is
not Parquet) are listed in two small tables keyed by class. Logging is set up here too, once
per process, by :func:`configure_logging`. This module imports nothing of the package.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable
from typing import ClassVar

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_USER_ERROR",
    "UserError",
    "configure_logging",
    "run_command",
    "user_message",
]

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
MAX_MESSAGE = 600
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

log = logging.getLogger("m2fp_batch")


class UserError(Exception):
    """A failure the user can fix; ``prefix + str(e)`` is the sentence they read."""

    prefix: ClassVar[str] = ""


# Standard-library errors a user causes -> prefix of the sentence (empty: the message speaks).
BUILTIN_ERRORS: dict[type[BaseException], str] = {
    UnicodeDecodeError: "text that is not UTF-8: ",
    UnicodeEncodeError: "a name that cannot be encoded: ",
    FileNotFoundError: "no such file or directory: ",
    IsADirectoryError: "a directory where a file was expected: ",
    NotADirectoryError: "a file where a directory was expected: ",
    FileExistsError: "a file is in the way: ",
    PermissionError: "permission denied: ",
    TimeoutError: "timed out: ",
    ConnectionError: "cannot connect: ",
    OSError: "",
}

# pyarrow's, by (module, class): looked up among the imported modules, so that this module does
# not import pyarrow (an exception of a module that is not imported cannot be raised).
LIBRARY_ERRORS: dict[tuple[str, str], str] = {
    ("pyarrow.lib", "ArrowInvalid"): "a Parquet or CSV file cannot be read: ",
    ("pyarrow.lib", "ArrowTypeError"): "a Parquet or CSV file has an unexpected type: ",
}


def configure_logging(verbose: bool = False) -> None:
    """The one logging set-up: the CLI calls it once; so does each Ray Train worker process.

    Our own loggers (``m2fp_batch.*``) speak at INFO, other libraries only from WARNING (a
    fresh HOME's matplotlib font cache is not news); ``verbose`` turns everything to DEBUG.
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format=LOG_FORMAT)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)


def _foreign_prefix(exc: BaseException) -> str | None:
    """The prefix for a standard-library or pyarrow user error, or None."""
    library = {}
    for (module, name), prefix in LIBRARY_ERRORS.items():
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type):
            library[cls] = prefix
    for cls in type(exc).__mro__:
        if cls in library:
            return library[cls]
        if cls in BUILTIN_ERRORS:
            return BUILTIN_ERRORS[cls]
    return None


def _one_sentence(text: str) -> str:
    """The message on one line (whitespace collapsed), bounded length."""
    s = " ".join(text.split())
    return s if len(s) <= MAX_MESSAGE else s[: MAX_MESSAGE - 3] + "..."


def _os_error_text(e: OSError) -> str:
    """``strerror: 'filename'`` for errno errors (no ``[Errno N]``), else the message."""
    if e.strerror and e.filename is not None:
        return f"{e.strerror}: {e.filename!r}"
    return e.strerror or str(e)


def user_message(exc: BaseException) -> str | None:
    """The sentence for a user error, or None when ``exc`` is not one (a bug)."""
    if isinstance(exc, UserError):
        return _one_sentence(exc.prefix + (str(exc) or type(exc).__name__))
    prefix = _foreign_prefix(exc)
    if prefix is None:
        return None
    body = _os_error_text(exc) if isinstance(exc, OSError) else str(exc)
    if isinstance(exc, OSError) and prefix and body.lower().startswith(prefix.rstrip(": ").lower()):
        prefix = ""
    return _one_sentence(prefix + (body or type(exc).__name__))


def _stop_ray() -> None:
    """Shut down the Ray this process started or joined (workers, raylet, GCS of a local Ray)."""
    ray = sys.modules.get("ray")
    if ray is None:
        return
    try:
        if ray.is_initialized():
            ray.shutdown()
    except Exception:  # noqa: BLE001 - best effort while exiting
        log.debug("ray.shutdown failed while exiting", exc_info=True)


def run_command(name: str, fn: Callable[[], int | None], verbose: bool = False) -> int:
    """Run ``fn`` (a subcommand's body) and map what it raises to a sentence and an exit code."""
    prog = f"m2fp-batch {name}"
    try:
        return int(fn() or 0)
    except KeyboardInterrupt:
        _stop_ray()
        print(
            f"{prog}: interrupted (Ctrl-C); finished work is kept, and running the same command again resumes.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - the one place that maps every failure
        _stop_ray()
        if verbose:
            traceback.print_exc()
        msg = user_message(e)
        if msg is not None:
            print(f"{prog}: {msg}", file=sys.stderr)
            return EXIT_USER_ERROR
        print(
            f"{prog}: internal error {type(e).__name__}: {_one_sentence(str(e))} "
            "(run again with -v for the traceback, and please report it).",
            file=sys.stderr,
        )
        return 1
