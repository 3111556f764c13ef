"""The network's forward as ONNX (dynamic batch, height and width) and as OpenVINO IR.

An export dir holds the graph, a copy of the source model dir's ``configuration.json`` and
``export.json`` (:class:`ExportManifest`): the checkpoint's and configuration's sha256, the
opset, the precision and the versions that made it. Engines other than torch load such a dir,
either one the user exported (``m2fp-batch export-model``) or one exported on first use into
a cache keyed by the checkpoint's sha256 (:func:`cached_export`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from m2fp_batch.inference.backends.graph import (
    INPUT_NAME,
    MANIFEST_NAME,
    ONNX_NAME,
    OPENVINO_NAME,
    OUTPUT_NAMES,
    ExportError,
    ExportManifest,
    is_export_dir,
    read_manifest,
)
from m2fp_batch.inference.backends.quantize import quantize_int8
from m2fp_batch.inference.loading import CONFIG_NAME, LoadedModel, ModelInfo
from m2fp_batch.model import M2FP

log = logging.getLogger(__name__)

__all__ = [
    "ENGINE_CACHE_ENV",
    "EXPORT_FORMATS",
    "OPSET",
    "cached_export",
    "check_precision",
    "default_cache_dir",
    "export_model",
    "onnx_to_openvino",
]

EXPORT_FORMATS = ("onnx", "openvino")
OPSET = 17
ENGINE_CACHE_ENV = "M2FP_ENGINE_CACHE"
# The traced input: any multiple of 32 works (height and width stay symbolic); small is quick.
TRACE_SIZE = (256, 320)
DYNAMIC_AXES = {
    INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
    "pred_logits": {0: "batch"},
    "pred_masks": {0: "batch", 2: "height_4", 3: "width_4"},
}
VERSIONED = ("torch", "onnx", "onnxruntime", "openvino", "m2fp-batch")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def model_code_sha256() -> str:
    """sha256 over the network's source files: a cached export is stale when they change."""
    h = hashlib.sha256()
    for path in sorted((Path(__file__).resolve().parents[2] / "model").glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


class _Forward(nn.Module):
    """The network with tuple outputs, as an exporter wants them."""

    def __init__(self, net: M2FP) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(images)
        return out["pred_logits"], out["pred_masks"]


def _export_onnx(net: M2FP, path: Path) -> None:
    """Trace the forward to ONNX (legacy exporter, opset 17) with symbolic batch, height, width."""
    dummy = torch.zeros(1, 3, *TRACE_SIZE)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # the shape checks inside nn.MultiheadAttention warn about Python booleans; they hold for any size
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*will be removed.*")
        torch.onnx.export(
            _Forward(net).eval(),  # the exporter restores the wrapper's mode afterwards: eval, never train
            (dummy,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=DYNAMIC_AXES,
            do_constant_folding=True,
        )


def _convert_openvino(onnx_path: Path, xml_path: Path) -> None:
    """ONNX -> OpenVINO IR, weights kept in float32 (save_model would halve them by default)."""
    try:
        import openvino as ov
    except ImportError as e:
        raise ExportError("--format openvino needs the 'openvino' package: pip install 'm2fp-batch[engines]'") from e
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=False)


def onnx_to_openvino(onnx_dir: Path, out: Path) -> ExportManifest:
    """An OpenVINO IR export dir from an ONNX export dir (same manifest, IR graph)."""
    source = read_manifest(onnx_dir)
    if source.format != "onnx":
        raise ExportError(f"{onnx_dir} is not an ONNX export")
    out.mkdir(parents=True, exist_ok=True)
    _convert_openvino(onnx_dir / source.graph, out / OPENVINO_NAME)
    shutil.copyfile(onnx_dir / CONFIG_NAME, out / CONFIG_NAME)
    manifest = replace(source, format="openvino", graph=OPENVINO_NAME)
    (out / MANIFEST_NAME).write_text(manifest.to_json())
    return manifest


def _manifest(fmt: str, info: ModelInfo, precision: str, calibration_images: int) -> ExportManifest:
    return ExportManifest(
        format=fmt,
        graph=ONNX_NAME if fmt == "onnx" else OPENVINO_NAME,
        precision=precision,
        opset=OPSET,
        checkpoint_sha256=info.checkpoint_sha256,
        config_sha256=info.config_sha256,
        source_model=info.model,
        code_sha256=model_code_sha256(),
        versions={name: _version(name) for name in VERSIONED},
        inputs={INPUT_NAME: ["batch", 3, "height", "width"]},
        calibration_images=calibration_images,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        unexpected_keys=list(info.unexpected_keys),
    )


def export_model(
    net: M2FP,
    info: ModelInfo,
    out: Path,
    fmt: str,
    *,
    precision: str = "fp32",
    calibration: list[torch.Tensor] | None = None,
) -> ExportManifest:
    """Write an export dir for ``net`` (loaded from ``info.model_dir``) into ``out`` (created).

    ``precision``: fp32; int8 (ONNX Runtime static quantisation calibrated on ``calibration``,
    preprocessed batches of the user's images; ONNX only); bf16 (OpenVINO only: the graph
    stays float32 and the CPU plugin runs it in bf16).
    """
    check_precision(fmt, precision)
    if precision == "int8" and not calibration:
        raise ExportError("int8 needs calibration images: pass --calibration-images DIR with a few of your photos")
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / ONNX_NAME
    t0 = time.perf_counter()
    try:
        _export_onnx(net, onnx_path)
    except (RuntimeError, torch.onnx.errors.OnnxExporterError) as e:  # an op or shape the exporter cannot express
        raise ExportError(f"the network could not be exported to ONNX: {type(e).__name__}: {str(e)[:300]}") from e
    if precision == "int8":
        quantize_int8(onnx_path, calibration or [])
    if fmt == "openvino":
        _convert_openvino(onnx_path, out / OPENVINO_NAME)
        onnx_path.unlink()
    shutil.copyfile(Path(info.model_dir) / CONFIG_NAME, out / CONFIG_NAME)
    manifest = _manifest(fmt, info, precision, len(calibration or []))
    (out / MANIFEST_NAME).write_text(manifest.to_json())
    log.info("exported %s (%s, %s) to %s in %.1f s", info.model, fmt, precision, out, time.perf_counter() - t0)
    return manifest


def check_precision(fmt: str, precision: str) -> None:
    """An ExportError unless ``precision`` is one that ``fmt`` offers."""
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"format {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}")
    allowed = {"onnx": ("fp32", "int8"), "openvino": ("fp32", "bf16")}[fmt]
    if precision not in allowed:
        raise ExportError(
            f"precision {precision!r} is not available for --format {fmt} (choose {' or '.join(allowed)}; "
            "int8 is ONNX Runtime static quantisation, bf16 the OpenVINO CPU plugin's inference precision)"
        )


def default_cache_dir() -> Path:
    """``$M2FP_ENGINE_CACHE``, else ``~/.cache/m2fp-batch/engines``."""
    env = os.environ.get(ENGINE_CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "m2fp-batch" / "engines"


def cached_export(load: Callable[[], LoadedModel], info: ModelInfo, fmt: str, cache_dir: Path | None = None) -> Path:
    """The fp32 export dir of this checkpoint, configuration and network code (``info``, from
    :func:`~m2fp_batch.inference.loading.describe_model`). Only a miss calls ``load`` and
    exports (OpenVINO IR: converted from the cached ONNX export, so the network is traced once);
    a hit never builds the torch network.

    Several processes may miss at once: each exports into its own temporary dir and the first
    rename wins; the others use the winner's.
    """
    key = f"{info.checkpoint_sha256[:24]}-{info.config_sha256[:12]}-{model_code_sha256()[:12]}"
    final = (cache_dir or default_cache_dir()) / key / fmt
    if is_export_dir(final):
        return final
    onnx_dir = cached_export(load, info, "onnx", cache_dir) if fmt == "openvino" else None
    final.parent.mkdir(parents=True, exist_ok=True)
    log.info("no cached %s export of %s: exporting into %s (once per checkpoint)", fmt, info.model, final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{fmt}-", dir=final.parent))
    try:
        if onnx_dir is not None:
            onnx_to_openvino(onnx_dir, tmp)
        else:
            loaded = load()
            export_model(loaded.net, loaded.info, tmp, fmt)
        os.rename(tmp, final)
    except OSError:
        if not is_export_dir(final):
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
