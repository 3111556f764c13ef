"""EngineSettings: validated once, a hash over exactly the label settings, the same flags in every
subcommand that labels photos, torch-free."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from m2fp_batch.cli import build_parser
from m2fp_batch.settings import GUARD_FIELDS, LABEL_FIELDS, EngineSettings, SettingsError

CHANGED = {
    "model": "other/model",
    "revision": "v2",
    "trust_checkpoint": True,
    "short_edge": 512,
    "max_size": 1000,
    "max_pixels": 1000,
    "min_side": 2,
    "max_bytes": 1000,
    "adaptive_brightness": True,
    "threads": 3,
    "device": "cuda:1",
    "precision": "bf16",
}


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_label_hash_covers_exactly_the_label_settings(name):
    base = EngineSettings()
    other = dataclasses.replace(base, **{name: CHANGED[name]})
    assert (other.label_hash() != base.label_hash()) == (name in LABEL_FIELDS), name


def test_every_field_is_a_label_setting_a_guard_or_how_to_run():
    names = set(EngineSettings.names())
    assert set(LABEL_FIELDS) | set(GUARD_FIELDS) | {"trust_checkpoint", "threads", "device"} == names
    assert set(CHANGED) | {"engine"} == names


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"short_edge": 0}, r"short_edge \(--short-edge\) must be an integer >= 1"),
        ({"max_pixels": -1}, r"max_pixels \(--max-pixels\)"),
        ({"threads": 0}, r"threads \(--threads\)"),
        ({"engine": "tensorrt"}, r"engine \(--engine\) must be one of torch"),
        ({"model": ""}, "no model"),
        ({"max_size": True}, "max_size"),
        ({"device": "gpu"}, r"device \(--device\) must be one of cpu, cuda, cuda:N, auto; got 'gpu'"),
        ({"device": "cuda:-1"}, r"device \(--device\)"),
        ({"device": "cuda:"}, r"device \(--device\)"),
        ({"device": "cuda:١"}, r"device \(--device\)"),
        ({"precision": "fp8"}, r"precision \(--precision\) must be one of fp32, bf16, fp16"),
        ({"engine": "onnxruntime", "device": "cuda"}, "apply to the torch engine"),
        ({"engine": "openvino", "precision": "fp16"}, "apply to the torch engine"),
    ],
)
def test_validated_once_with_the_flag_named(bad, message):
    with pytest.raises(SettingsError, match=message):
        EngineSettings(**bad)


ENGINE_FLAGS = ["--model", "--revision", "--trust-checkpoint", "--engine", "--short-edge", "--max-size", "--threads",
                "--adaptive-brightness", "--device", "--precision"]  # fmt: skip
GUARD_FLAGS = ["--max-pixels", "--min-side", "--max-bytes"]


def _options(command: str) -> dict[str, str]:
    sub = next(a for a in build_parser(command)._actions if a.dest == "command").choices[command]
    return {o: a.dest for a in sub._actions for o in a.option_strings}


@pytest.mark.parametrize("command", ["parse", "run", "serve", "evaluate"])
def test_the_same_engine_flags_in_every_subcommand(command):
    opts = _options(command)
    flags = ENGINE_FLAGS + (GUARD_FLAGS if command != "evaluate" else [])
    for flag in flags:
        assert opts.get(flag) == flag[2:].replace("-", "_"), (command, flag)
    if command == "evaluate":  # it reads photos through the labelled dirs' own guards
        assert not any(f in opts for f in GUARD_FLAGS)


def test_one_meaning_per_flag():
    """--out is the output everywhere (run keeps --output); --crop and --batch are training's."""
    for command in ("parse", "run", "train"):
        assert _options(command)["--out"] in ("out", "output"), command
    assert _options("run")["--output"] == _options("run")["--out"]
    train = _options("train")
    assert "--crop" in train and "--batch" in train and "--short-edge" not in train and "--batch-size" not in train
    assert "--batch-size" not in _options("parse") and _options("parse")["--max-batch"] == "max_batch"
    assert _options("serve")["--max-batch"] == "max_batch"


def test_from_args_keeps_the_base_for_flags_not_given():
    parser = build_parser("serve")
    args = parser.parse_args(["serve", "--short-edge", "320", "--adaptive-brightness"])
    base = EngineSettings(max_pixels=1234)
    got = EngineSettings.from_args(args, base=base)
    assert got == dataclasses.replace(base, short_edge=320, adaptive_brightness=True)


def test_settings_are_torch_free():
    code = (
        "import sys, m2fp_batch.settings, m2fp_batch.serve.settings; "
        "print(sorted(m for m in ('torch', 'onnxruntime', 'openvino') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_int8_is_a_precision_of_exports_only():
    """One --precision everywhere: export-model makes int8 exports, labelling reads them through their engine."""
    EngineSettings(precision="bf16").check_labelling()
    with pytest.raises(SettingsError, match="a precision of export-model"):
        EngineSettings(precision="int8").check_labelling()
    assert "--precision" in _options("export-model") and _options("export-model")["--precision"] == "precision"


def test_default_precision_keeps_the_hash_of_outputs_written_before_precision_existed():
    """Outputs of 0.1 hashed six fields; fp32 (the default) must resume into them, bf16 must not."""
    import hashlib
    import json

    before = ("model", "revision", "engine", "short_edge", "max_size", "adaptive_brightness")
    settings = EngineSettings(model="/models/m2fp", short_edge=512)
    old_rule = json.dumps({k: getattr(settings, k) for k in before}, sort_keys=True).encode()
    assert settings.label_hash() == hashlib.sha256(old_rule).hexdigest()[:16]
    assert EngineSettings(model="/models/m2fp", short_edge=512, precision="bf16").label_hash() != settings.label_hash()
