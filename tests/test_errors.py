"""m2fp_batch.errors: one sentence per failure, exit 2 / 130 / 1, the traceback only with -v."""

from __future__ import annotations

import pyarrow as pa
import pytest

from m2fp_batch.command import EXIT_INTERRUPTED, EXIT_USER_ERROR, run_command
from m2fp_batch.errors import UserError, user_message
from m2fp_batch.formats.cvat import CvatError
from m2fp_batch.inference.loading import ModelLoadError
from m2fp_batch.labelstudio.client import LabelStudioAuthError, LabelStudioError, LabelStudioUnreachable
from m2fp_batch.labelstudio.project import ForeignProjectError
from m2fp_batch.pipeline.config import JobSettingsError


@pytest.mark.parametrize(
    "exc, sentence",
    [
        (UserError("the input is empty"), "the input is empty"),
        (JobSettingsError("batch_size must be >= 1"), "bad configuration: batch_size must be >= 1"),
        (ModelLoadError("dir has no checkpoint\n(see docs)"), "dir has no checkpoint (see docs)"),
        (FileNotFoundError(2, "No such file or directory", "/x.jpg"), "No such file or directory: '/x.jpg'"),
        (pa.ArrowInvalid("Parquet magic bytes not found"), "a Parquet or CSV file cannot be read: Parquet magic"),
        (LabelStudioUnreachable("cannot reach Label Studio at http://127.0.0.1:1: refused"), "cannot reach Label"),
        (LabelStudioAuthError("Label Studio at http://x refused the token (HTTP 401)"), "Label Studio at http://x"),
        (LabelStudioError("Label Studio at http://x answered HTTP 500"), "Label Studio at http://x answered"),
        (ForeignProjectError("Label Studio project 'boxes' was not made by m2fp-batch"), "Label Studio project"),
        (CvatError("cvat/ has no labelmap.txt"), "cvat/ has no labelmap.txt"),
    ],
)
def test_user_errors_are_one_sentence(exc, sentence):
    msg = user_message(exc)
    assert msg is not None and msg.startswith(sentence) and "\n" not in msg


def test_a_bug_is_not_a_user_error():
    assert user_message(TypeError("unsupported operand")) is None


def _raise(exc: BaseException):
    def fn():
        raise exc

    return fn


def test_run_command_exit_codes(capsys):
    assert run_command("run", lambda: 0) == 0
    assert run_command("run", _raise(JobSettingsError("shard_size must be >= 1"))) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err == "m2fp-batch run: bad configuration: shard_size must be >= 1\n"
    assert run_command("run", _raise(KeyboardInterrupt())) == EXIT_INTERRUPTED
    assert "interrupted (Ctrl-C)" in capsys.readouterr().err
    assert run_command("report", _raise(ZeroDivisionError("division by zero"))) == 1
    err = capsys.readouterr().err
    assert "internal error ZeroDivisionError" in err and "-v" in err and "Traceback" not in err


def test_traceback_only_with_verbose(capsys):
    assert run_command("run", _raise(JobSettingsError("x")), verbose=True) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith("m2fp-batch run: bad configuration: x")
