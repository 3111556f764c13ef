"""One place that turns exceptions into what a user reads: one sentence and an exit code.

Every subcommand runs through :func:`run_command`. A user error (bad settings, bad input, bad
model, unreachable storage, a refused resume) prints ``m2fp-batch CMD: <sentence>`` and exits
2; Ctrl-C prints a sentence and exits 130 after stopping the Ray this process started; any
other exception is a bug: one sentence asking for ``-v`` and exit 1. The traceback is printed
only with ``-v``.

The known error types are named here by their import path, so this module imports nothing of
the package (``model/`` imports nothing of ours and cannot subclass :class:`UserError`).
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable

__all__ = ["EXIT_INTERRUPTED", "EXIT_USER_ERROR", "USER_ERRORS", "UserError", "run_command", "user_message"]

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
MAX_MESSAGE = 600

log = logging.getLogger("m2fp_batch")


class UserError(Exception):
    """A failure the user can fix; ``str(e)`` is the sentence they read."""


# "module.Class" -> prefix of the sentence (empty: the message speaks for itself).
USER_ERRORS: dict[str, str] = {
    "m2fp_batch.errors.UserError": "",
    "m2fp_batch.pipeline.config.JobConfigError": "bad configuration: ",
    "m2fp_batch.settings.SettingsError": "bad configuration: ",
    "m2fp_batch.pipeline.inputs.InputError": "",
    "m2fp_batch.pipeline.output.OutputError": "",
    "m2fp_batch.storage.StorageError": "",
    "m2fp_batch.inference.loading.ModelLoadError": "",
    "m2fp_batch.model.build.ConfigError": "bad model configuration.json: ",
    "m2fp_batch.model.checkpoint.CheckpointMismatchError": "",
    "m2fp_batch.decode.ImageError": "",
    "m2fp_batch.report.data.ReportError": "",
    "m2fp_batch.review.masks.ReviewInputError": "",
    "m2fp_batch.review.export.ExportError": "",
    "m2fp_batch.labels.reader.LabelsError": "",
    "m2fp_batch.labels.maps.MaskSizeError": "",
    "m2fp_batch.formats.export.ExportError": "",
    "m2fp_batch.train.run.TrainError": "",
    "pyarrow.lib.ArrowInvalid": "a Parquet or CSV file cannot be read: ",
    "pyarrow.lib.ArrowTypeError": "a Parquet or CSV file has an unexpected type: ",
    "UnicodeDecodeError": "text that is not UTF-8: ",
    "UnicodeEncodeError": "a name that cannot be encoded: ",
    "FileNotFoundError": "no such file or directory: ",
    "IsADirectoryError": "a directory where a file was expected: ",
    "NotADirectoryError": "a file where a directory was expected: ",
    "FileExistsError": "a file is in the way: ",
    "PermissionError": "permission denied: ",
    "TimeoutError": "timed out: ",
    "ConnectionError": "cannot connect: ",
    "OSError": "",
}


def _key(cls: type) -> str:
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


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
    for cls in type(exc).__mro__:
        prefix = USER_ERRORS.get(_key(cls))
        if prefix is None:
            continue
        body = _os_error_text(exc) if isinstance(exc, OSError) and cls is not UserError else str(exc)
        if isinstance(exc, OSError) and prefix and body.lower().startswith(prefix.rstrip(": ").lower()):
            prefix = ""
        return _one_sentence(prefix + (body or type(exc).__name__))
    return None


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
