"""Every subcommand, given a user error, ends through the one path (``command.run_command``).

Each row runs the real ``python -m m2fp_batch.cli`` in a subprocess with a fresh HOME and
checks what a user sees: exit 2, exactly one line ``m2fp-batch CMD: <sentence>`` on stderr,
no traceback. A subcommand added to ``cli.SUBCOMMANDS`` without a row here fails
``test_every_subcommand_has_a_row``.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from m2fp_batch.cli import SUBCOMMANDS

ROOT = Path(__file__).resolve().parents[1]

NO_CUDA = "sees no CUDA GPU"
# (subcommand, argv after it with {tmp} for a scratch dir, words the sentence must hold)
ROWS = [
    ("parse", ["{tmp}/photo.png", "--model", "{tmp}/no-model", "--out", "{tmp}/o"], "no such directory"),
    ("run", ["--input", "{tmp}", "--output", "{tmp}/o", "--batch-size", "0"], "batch_size must be >= 1"),
    ("run", ["--input", "{tmp}/nope", "--output", "{tmp}/o", "--model", "{tmp}"], "has no configuration.json"),
    ("report", ["{tmp}/nowhere"], "nowhere"),
    ("review", ["--dataset", "rv-none"], "give the job output DIR"),
    ("review", ["{tmp}", "--dataset", "rv-none", "--low-score", "2"], "--low-score must be in [0, 1]"),
    ("export-reviewed", ["rv-none", "--out", "{tmp}/o", "--rows-per-file", "0"], "--rows-per-file must be >= 1"),
    ("export", ["{tmp}/nowhere", "--format", "coco", "--out", "{tmp}/c"], "does not exist"),
    ("export", ["{tmp}", "--format", "coco", "--out", "{tmp}/c", "--include-errors", "yes"], "accepts only 'no'"),
    ("serve", ["--model", "{tmp}/no-model", "--replicas", "0"], "replicas must be >= 1"),
    ("serve", ["--model", "{tmp}/no-model"], "no such directory"),
    ("train", ["--data", "{tmp}", "--model", "{tmp}", "--out", "{tmp}/m", "--skin-weights", "blue=1"], "GROUP=WEIGHT"),
    ("train", ["--data", "{tmp}", "--model", "{tmp}/no-model", "--out", "{tmp}/m"], "no such directory"),
    (
        "train",
        ["--data", "{tmp}", "--model", "{tmp}", "--out", "{tmp}/m", "--checkpoint-every", "0"],
        "--checkpoint-every must be >= 1, got 0",
    ),
    ("export-model", ["--model", "{tmp}/no-model", "--format", "onnx", "--out", "{tmp}/e"], "no such directory"),
    ("export-model", ["--format", "onnx", "--out", "{tmp}"], "is not an empty directory"),
    (
        "export-model",
        ["--model", "{tmp}", "--format", "openvino", "--precision", "int8", "--out", "{tmp}/e"],
        "not available for --format openvino",
    ),
    ("parse", ["{tmp}/photo.png", "--model", "{tmp}", "--engine", "tensorrt", "--out", "{tmp}/o"], "must be one of"),
    ("evaluate", ["--model", "{tmp}", "--data", "{tmp}", "--short-edge", "0"], "short_edge (--short-edge) must be"),
    ("evaluate", ["--model", "{tmp}/no-model", "--data", "{tmp}/nowhere"], "nowhere"),
    # --device cuda without CUDA (CI has no GPU; where torch sees one, these rows are skipped)
    ("parse", ["{tmp}/photo.png", "--model", "{tmp}", "--device", "cuda", "--out", "{tmp}/o"], NO_CUDA),
    ("evaluate", ["--model", "{tmp}", "--data", "{tmp}", "--device", "cuda:0"], NO_CUDA),
    ("serve", ["--model", "{tmp}/no-model", "--device", "cuda"], NO_CUDA),
    ("run", ["--input", "{tmp}", "--output", "{tmp}/o", "--device", "cuda", "--gpus-per-actor", "1"], NO_CUDA),
    ("run", ["--input", "{tmp}", "--output", "{tmp}/o", "--device", "cuda"], "needs gpus_per_actor > 0"),
    ("parse", ["{tmp}/photo.png", "--model", "{tmp}", "--precision", "fp8", "--out", "{tmp}/o"], "--precision"),
    ("run", ["--input", "{tmp}", "--output", "{tmp}/o", "--precision", "int8"], "a precision of export-model"),
    (
        "label-studio",
        ["push", "{tmp}", "--url", "http://127.0.0.1:9", "--project", "p", "--token-env", "M2FP_NO_SUCH_VAR"],
        "no Label Studio token: set M2FP_NO_SUCH_VAR",
    ),
    (
        "label-studio",
        ["pull", "{tmp}", "--url", "ftp://x", "--project", "p", "--out", "{tmp}/r", "--token-env", "HOME"],
        "not an http(s) URL",
    ),
    (
        "label-studio",
        ["push", "{tmp}", "--url", "http://127.0.0.1:9", "--project", "p", "--token-env", "HOME"],
        "cannot reach",
    ),
    ("cvat", ["pull", "{tmp}", "--cvat", "{tmp}/nowhere", "--out", "{tmp}/r"], "is not a directory"),
    ("cvat", ["pull", "{tmp}", "--cvat", "{tmp}", "--out", "{tmp}/r"], "has no labelmap.txt"),
    (
        "cvat",
        ["pull", "{tmp}", "--cvat", "{tmp}", "--out", "{tmp}/r", "--rows-per-file", "0"],
        "--rows-per-file must be",
    ),
    (
        "label-studio",
        ["push", "{tmp}", "--url", "http://127.0.0.1:9", "--project", "p", "--low-score", "-1"],
        "--low-score must be in [0, 1]",
    ),
]


def test_every_subcommand_has_a_row():
    assert set(SUBCOMMANDS) <= {cmd for cmd, _, _ in ROWS}, "give the new subcommand a row in ROWS"


@pytest.mark.parametrize("cmd, argv, words", ROWS, ids=[f"{r[0]}-{i}" for i, r in enumerate(ROWS)])
def test_user_error_is_one_sentence_and_exit_2(tmp_path, cmd, argv, words):
    from PIL import Image
    from skimage import data

    if words == NO_CUDA:
        import torch

        if torch.cuda.is_available():
            pytest.skip("torch sees a CUDA GPU here")
    Image.fromarray(data.astronaut()[::8, ::8]).save(tmp_path / "photo.png")
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "PYTHONPATH": str(ROOT),
        "RAY_USAGE_STATS_ENABLED": "0",
        "FIFTYONE_DO_NOT_TRACK": "true",
    }
    env.pop("RAY_ADDRESS", None)
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    proc = subprocess.run(
        [sys.executable, "-m", "m2fp_batch.cli", cmd, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=180,
    )
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"m2fp-batch {cmd}: ") and words in lines[0], lines[0]


def _module_file(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    return Path(spec.origin)


@pytest.mark.parametrize("cmd", sorted(SUBCOMMANDS))
def test_subcommands_leave_exit_codes_of_errors_to_the_entry_point(cmd):
    """No subcommand picks the user-error exit code or exits itself: they raise."""
    tree = ast.parse(_module_file(SUBCOMMANDS[cmd][0]).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Constant):
            assert node.value.value != 2, f"{cmd}: line {node.lineno} returns 2; raise a UserError instead"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "exit":
            raise AssertionError(f"{cmd}: line {node.lineno} exits; raise a UserError instead")


def test_errors_are_mapped_by_class_not_by_name():
    from m2fp_batch.errors import UserError, user_message

    class Renamed(UserError):
        prefix = "bad thing: "

    assert user_message(Renamed("x")) == "bad thing: x"
    impostor = type("UserError", (Exception,), {})  # the same name is not the class
    assert user_message(impostor("x")) is None


def test_errors_module_imports_no_library():
    code = "import sys, m2fp_batch.errors; print(sorted(m for m in ('pyarrow', 'torch', 'ray') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    assert out.stdout.strip() == "[]", out.stderr
