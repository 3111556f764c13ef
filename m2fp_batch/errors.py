"""The error types a user can fix, and the one place an exception becomes the sentence they read.

Our own user errors are the subclasses of :class:`UserError` (matched with ``isinstance``);
the standard library's and pyarrow's errors that a user causes (a missing file, a file that is
not Parquet) are listed in two small tables keyed by class. :func:`user_message` turns any of
them into one sentence (None: a bug); :func:`m2fp_batch.command.run_command` prints it and picks
the exit code. This module imports nothing of the package.
"""

from __future__ import annotations

import sys
from typing import ClassVar

__all__ = ["UserError", "one_sentence", "user_message"]

MAX_MESSAGE = 600


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


def one_sentence(text: str) -> str:
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
        return one_sentence(exc.prefix + (str(exc) or type(exc).__name__))
    prefix = _foreign_prefix(exc)
    if prefix is None:
        return None
    body = _os_error_text(exc) if isinstance(exc, OSError) else str(exc)
    if isinstance(exc, OSError) and prefix and body.lower().startswith(prefix.rstrip(": ").lower()):
        prefix = ""
    return one_sentence(prefix + (body or type(exc).__name__))
