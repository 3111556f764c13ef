"""The engine's settings: one frozen dataclass shared by ``parse``, ``run``, ``serve`` and ``evaluate``.

Torch-free (the service front end and the job's driver read it without loading the model). A setting
is a field here, added to every subcommand by :func:`add_engine_arguments` with the same flag and
meaning, validated once (``__post_init__``) and passed as this type across every boundary, Ray
included. :meth:`EngineSettings.label_hash` is the ``config_hash`` of every row and every
``/api/parse`` answer: the same photo, model and settings give the same hash in the job and the service.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from dataclasses import dataclass, fields
from typing import Any

from m2fp_batch.backend_registry import ENGINES
from m2fp_batch.decode import DEFAULT_MAX_PIXELS
from m2fp_batch.errors import UserError
from m2fp_batch.resize import MAX_SIZE, SHORT_EDGE
from m2fp_batch.storage import DEFAULT_MAX_BYTES

__all__ = [
    "DEFAULT_MODEL_ID",
    "DEVICES",
    "GUARD_FIELDS",
    "PRECISIONS",
    "LABEL_FIELDS",
    "EngineSettings",
    "SettingsError",
    "ENGINE_GROUP",
    "MODEL_FIELDS",
    "add_engine_arguments",
    "is_gpu_share",
]

DEFAULT_MODEL_ID = "damo/cv_resnet101_image-multiple-human-parsing"
# Where the torch engine runs: cpu, cuda (the current CUDA device), cuda:N, or auto (cuda when
# torch sees a GPU, else cpu). Not hashed: fp32 on CUDA passes the same parity check as the CPU
# (docs/engine.md "Devices"), so the device is provenance (every row's ``device`` column), not a label setting.
DEVICES = ("cpu", "cuda", "cuda:N", "auto")
# The network's arithmetic. Labelling with the torch engine: fp32 (TF32 off, the parity setting) or
# autocast to bf16 / fp16 (opt-in; labels move a little, hence hashed); the postprocess always runs in
# float32. export-model: fp32, int8 (ONNX Runtime static quantisation) or bf16 (OpenVINO).
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
# Precisions only an export is made in: labelling reads such an export (--engine onnxruntime --model DIR).
EXPORT_PRECISIONS = ("int8",)
# The settings that change an ``ok`` row's labels: hashed by label_hash.
LABEL_FIELDS = ("model", "revision", "engine", "short_edge", "max_size", "adaptive_brightness", "precision")
# The decode guards: they decide which photos get labels (an error row instead), never the labels.
GUARD_FIELDS = ("max_pixels", "min_side", "max_bytes")
# What every subcommand that loads a model takes at least (train takes only these: it reads weights only).
MODEL_FIELDS = ("model", "revision")
# The title of the engine flags' group in --help (m2fp_batch.cli_docs checks that no subcommand declares them again).
ENGINE_GROUP = "engine settings (the same flags in every subcommand that loads a model)"
_POSITIVE = ("short_edge", "max_size", "max_pixels", "min_side", "max_bytes")


class SettingsError(UserError, ValueError):
    """A setting has a wrong value; the message names the setting, its flag and what is allowed."""

    prefix = "bad configuration: "


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def is_gpu_share(value: object) -> bool:
    """A GPU request Ray accepts per actor or replica: a fraction in (0, 1], or whole GPUs."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        return False
    return value <= 1 or float(value).is_integer()


def _is_device(device: object) -> bool:
    """cpu, cuda, cuda:N (N a non-negative integer) or auto."""
    if not isinstance(device, str):
        return False
    index = device.removeprefix("cuda:")
    return device in ("cpu", "cuda", "auto") or (index != device and index.isdigit() and index.isascii())


@dataclass(frozen=True)
class EngineSettings:
    """How a photo becomes labels: the model, the engine, the model input and the decode guards.

    Attributes:
        model: local model dir or ModelScope id.
        revision: ModelScope revision (None: the hub's default).
        trust_checkpoint: allow a checkpoint that needs full unpickling (it can run code).
        engine: the network-forward backend: a name of :mod:`m2fp_batch.backend_registry` or ``auto``
            (``ENGINES``).
        short_edge, max_size: the model input's resize (short side, long-side cap).
        max_pixels, min_side, max_bytes: decode guards (an error row instead of labels).
        adaptive_brightness: brighten dark photos for the model input only (skin tone uses the original).
        threads: torch threads per engine (None: the caller's choice, see each subcommand's help).
        device: where the torch engine runs (``DEVICES``); recorded in every row, not hashed.
        precision: the forward's arithmetic (``PRECISIONS``); hashed.
    """

    model: str = DEFAULT_MODEL_ID
    revision: str | None = None
    trust_checkpoint: bool = False
    engine: str = "torch"
    short_edge: int = SHORT_EDGE
    max_size: int = MAX_SIZE
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = 8
    max_bytes: int = DEFAULT_MAX_BYTES
    adaptive_brightness: bool = False
    threads: int | None = None
    device: str = "cpu"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if not self.model:
            raise SettingsError("no model: pass --model DIR-or-ModelScope-id")
        for name in _POSITIVE:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SettingsError(f"{name} ({_flag(name)}) must be an integer >= 1, got {value!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise SettingsError(f"threads (--threads) must be an integer >= 1, got {self.threads!r}")
        if self.engine not in ENGINES:
            raise SettingsError(f"engine (--engine) must be one of {', '.join(ENGINES)}; got {self.engine!r}")
        if not _is_device(self.device):
            raise SettingsError(f"device (--device) must be one of {', '.join(DEVICES)}; got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise SettingsError(
                f"precision (--precision) must be one of {', '.join(PRECISIONS)}; got {self.precision!r}"
            )
        if self.engine != "torch" and (self.device != "cpu" or self.precision != "fp32"):
            raise SettingsError(
                f"--device and --precision apply to the torch engine (--engine torch), not {self.engine}"
            )

    def check_labelling(self) -> None:
        """Raise :class:`SettingsError` when these settings cannot label photos (an export-only precision)."""
        if self.precision in EXPORT_PRECISIONS:
            raise SettingsError(
                f"--precision {self.precision} is a precision of export-model (--format onnx); label with such an "
                "export: --engine onnxruntime --model EXPORT_DIR (the torch engine takes fp32, bf16 or fp16)"
            )

    def label_settings(self) -> dict[str, Any]:
        """The settings that change an ``ok`` row's labels (``LABEL_FIELDS``)."""
        return {k: getattr(self, k) for k in LABEL_FIELDS}

    def guards(self) -> dict[str, int]:
        """The decode guards (``GUARD_FIELDS``)."""
        return {k: getattr(self, k) for k in GUARD_FIELDS}

    def label_hash(self) -> str:
        """sha256 (16 hex digits) of :meth:`label_settings`: the ``config_hash`` of rows and answers.

        The default precision (fp32) is left out of the hash, so outputs written before ``precision``
        existed keep their hash and resume; bf16 and fp16 change labels and so change the hash."""
        labelled = self.label_settings()
        if labelled.get("precision") == "fp32":
            del labelled["precision"]
        blob = json.dumps(labelled, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_args(cls, args: argparse.Namespace, base: EngineSettings | None = None) -> EngineSettings:
        """``base`` (default: the defaults) with every engine flag the user gave (flags default to None)."""
        given = {k: v for k in cls.names() if (v := getattr(args, k, None)) is not None}
        return dataclasses.replace(base or cls(), **given)


_HELP = {
    "model": "local model dir or ModelScope id (default: the official M2FP, {d})",
    "revision": "ModelScope revision of --model (default: the hub's default)",
    "trust_checkpoint": "allow a checkpoint that needs full unpickling (it can run code: only weights you trust)",
    "engine": "network-forward backend, one of {choices} (default: {d}); onnxruntime and openvino export "
    "the network once per checkpoint into $M2FP_ENGINE_CACHE (default ~/.cache/m2fp-batch/engines) or read "
    "--model EXPORT_DIR (m2fp-batch export-model); auto: the first installed engine of the measured speed order (docs/engine.md)",
    "short_edge": "model input short side in pixels (default: {d}, the official resize)",
    "max_size": "model input long-side cap in pixels (default: {d}, the official resize)",
    "max_pixels": "decode guard: a photo above this many pixels becomes a too_large error (default: {d})",
    "min_side": "decode guard: a photo with a side below this becomes a too_small error (default: {d})",
    "max_bytes": "decode guard: a file above this many bytes becomes a too_large error (default: {d})",
    "adaptive_brightness": "brighten dark photos (mean HSV V < 80) for the model input only; skin tone uses the "
    "original pixels",
    "device": "where the torch engine runs: cpu, cuda, cuda:N or auto (cuda when torch sees a GPU) (default: {d}); "
    "recorded in every row, not in config_hash (fp32 on CUDA passes the parity check)",
    "precision": "the network's arithmetic: fp32 (TF32 off, the parity setting), bf16 or fp16 (torch autocast, "
    "opt-in; labels move slightly, so it is in config_hash); export-model: fp32, int8 (ONNX Runtime static "
    "quantisation, --format onnx, needs --calibration-images) or bf16 (--format openvino) (default: {d})",
}


def add_engine_arguments(
    parser: argparse.ArgumentParser,
    *,
    guards: bool = True,
    threads_help: str = "torch threads (default: torch's)",
    base: EngineSettings | None = None,
    only: tuple[str, ...] | None = None,
) -> None:
    """The engine flags, each defaulting to None (unset: :meth:`EngineSettings.from_args` keeps the base value).

    Args:
        guards: add the decode guards (``--max-pixels``, ``--min-side``, ``--max-bytes``); off where the
            subcommand reads photos through other guards (``evaluate`` reads labelled dirs).
        threads_help: what ``--threads`` means in this subcommand (its default differs).
        base: the subcommand's defaults, shown in the help (give the same to ``from_args``).
        only: just these fields (a subcommand that loads the network but does not label photos:
            ``train``, ``export-model``); every such subcommand takes at least :data:`MODEL_FIELDS`.
    """
    d = base or EngineSettings()
    group = parser.add_argument_group(ENGINE_GROUP)
    for f in fields(EngineSettings):
        if (f.name in GUARD_FIELDS and not guards) or (only is not None and f.name not in only):
            continue
        text = threads_help if f.name == "threads" else _HELP[f.name]
        text = text.format(d=getattr(d, f.name), choices=", ".join(ENGINES))
        if f.type == "bool":
            group.add_argument(_flag(f.name), action="store_true", default=None, help=text)
        else:
            kind = int if f.type.startswith("int") else str
            group.add_argument(_flag(f.name), type=kind, default=None, help=text)
