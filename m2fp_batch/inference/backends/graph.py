"""An export dir's contract: the graph's input and output names, ``export.json``
(:class:`ExportManifest`) and how a dir is recognised and read.

Shared by the exporter (:mod:`.export`), the int8 quantiser (:mod:`.quantize`) and the backends
that run an exported graph.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from m2fp_batch.errors import UserError
from m2fp_batch.inference.loading import CONFIG_NAME

__all__ = [
    "INPUT_NAME",
    "MANIFEST_NAME",
    "ONNX_NAME",
    "OPENVINO_NAME",
    "OUTPUT_NAMES",
    "ExportError",
    "ExportManifest",
    "is_export_dir",
    "read_manifest",
]

MANIFEST_NAME = "export.json"
ONNX_NAME = "model.onnx"
OPENVINO_NAME = "model.xml"
INPUT_NAME = "images"
OUTPUT_NAMES = ("pred_logits", "pred_masks")


class ExportError(UserError):
    """The network cannot be exported, or an export dir is not a usable export; the message says why."""


@dataclass(frozen=True)
class ExportManifest:
    """``export.json``: what the graph is and where it came from."""

    format: str  # onnx | openvino
    graph: str  # file name of the graph inside the dir
    precision: str  # fp32 | int8 | bf16 (bf16: the OpenVINO CPU plugin's inference precision)
    opset: int
    checkpoint_sha256: str
    config_sha256: str
    source_model: str
    code_sha256: str
    versions: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, list] = field(default_factory=dict)
    calibration_images: int = 0
    created: str = ""
    unexpected_keys: list[str] = field(default_factory=list)  # checkpoint keys the network does not use

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


def is_export_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / MANIFEST_NAME).is_file()


def read_manifest(path: str | os.PathLike) -> ExportManifest:
    """The manifest of an export dir; an unreadable or incomplete one is an :class:`ExportError`."""
    file = Path(path) / MANIFEST_NAME
    try:
        raw = json.loads(file.read_text())
        manifest = ExportManifest(**raw)
    except (OSError, ValueError, TypeError) as e:
        raise ExportError(f"{file} is not an m2fp-batch export manifest: {e}") from e
    for name in (manifest.graph, CONFIG_NAME):
        if not (Path(path) / name).is_file():
            raise ExportError(f"export dir {path} lacks {name}: export it again with m2fp-batch export-model")
    return manifest
