"""``m2fp-batch export-model --model M --format onnx|openvino --out DIR``: the network for
ONNX Runtime, OpenVINO or any ONNX consumer, checked against PyTorch at two input sizes."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from m2fp_batch.decode import ImageError, decode_image
from m2fp_batch.inference import preprocess
from m2fp_batch.inference.backends.export import EXPORT_FORMATS, check_precision, export_model
from m2fp_batch.inference.backends.graph import ExportError, read_manifest
from m2fp_batch.inference.backends.load import open_engine
from m2fp_batch.inference.loading import load_model
from m2fp_batch.model import M2FP
from m2fp_batch.model.build import PIXEL_MEAN, PIXEL_STD, SIZE_DIVISIBILITY
from m2fp_batch.resize import SHORT_EDGE, target_size
from m2fp_batch.settings import MODEL_FIELDS, EngineSettings, add_engine_arguments

log = logging.getLogger(__name__)

__all__ = ["add_arguments", "calibration_batches", "main", "verify_export"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
# two padded sizes that differ in both axes: the graph must not have baked either
VERIFY_SIZES = ((256, 320), (320, 224))
# fp32 engines agree with torch to float rounding; the mask logits are large, so relative
VERIFY_TOLERANCE = 1e-3


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", default=None, help="ModelScope download cache")
    p.add_argument("--format", choices=EXPORT_FORMATS, required=True, help="onnx (ONNX Runtime) or openvino (IR)")
    p.add_argument("--out", required=True, help="export dir to create (must not hold files)")
    p.add_argument("--calibration-images", default=None, help="dir of your own photos to calibrate int8 on")
    p.add_argument("--calibration-count", type=int, default=16, help="photos used for int8 calibration")
    add_engine_arguments(
        p,
        only=(*MODEL_FIELDS, "trust_checkpoint", "threads", "precision"),
        threads_help="threads for the check run (default: all)",
    )


def calibration_batches(directory: str, count: int, short_edge: int = SHORT_EDGE) -> list[torch.Tensor]:
    """Up to ``count`` photos of ``directory`` (sorted), preprocessed as the engine does."""
    root = Path(directory)
    if not root.is_dir():
        raise ExportError(f"--calibration-images {directory!r} is not a directory")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())[: max(count, 0)]
    batches = []
    for path in paths:
        try:
            img = decode_image(path.read_bytes())
        except (OSError, ImageError) as e:
            log.warning("calibration: skipping %s (%s)", path, e)
            continue
        resized = preprocess.resize(img, target_size(*img.shape[:2], short_edge))
        mean, std = torch.tensor(PIXEL_MEAN).view(-1, 1, 1), torch.tensor(PIXEL_STD).view(-1, 1, 1)
        batches.append(preprocess.to_batch([resized], mean, std, SIZE_DIVISIBILITY))
    if not batches:
        raise ExportError(f"--calibration-images {directory!r} holds no readable photo ({', '.join(IMAGE_SUFFIXES)})")
    return batches


def verify_export(net: M2FP, out: Path, threads: int | None, exact: bool) -> list[str]:
    """Run the export at two input sizes beside torch; ExportError when an fp32 export differs."""
    engine = "onnxruntime" if read_manifest(out).format == "onnx" else "openvino"
    backend = open_engine(out, engine, threads=threads).backend
    lines = []
    gen = torch.Generator().manual_seed(0)
    for h, w in VERIFY_SIZES:
        batch = torch.randn(1, 3, h, w, generator=gen)
        with torch.inference_mode():
            ref = net(batch)
        got = backend(batch)
        for name in ("pred_logits", "pred_masks"):
            if got[name].shape != ref[name].shape:
                raise ExportError(
                    f"the export gives {name} of shape {tuple(got[name].shape)} at {h}x{w}, torch {tuple(ref[name].shape)}"
                )
            err = float((got[name] - ref[name]).abs().max() / (ref[name].abs().max() + 1e-12))
            lines.append(f"{engine} {h}x{w} {name}: max difference {err:.2e} of the largest value")
            if exact and not err <= VERIFY_TOLERANCE:  # NaN fails too
                raise ExportError(f"the export differs from torch at {h}x{w} ({name}: {err:.2e} of the largest value)")
    return lines


def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"--out {str(out)!r} already exists and is not an empty directory")
    engine = EngineSettings.from_args(args)
    check_precision(args.format, engine.precision)
    calibration = None
    if engine.precision == "int8":
        if not args.calibration_images:
            raise ExportError("--precision int8 needs --calibration-images DIR (a few of your own photos)")
        calibration = calibration_batches(args.calibration_images, args.calibration_count)
    loaded = load_model(
        engine.model, revision=engine.revision, cache_dir=args.cache_dir, trust_checkpoint=engine.trust_checkpoint
    )
    net, info = loaded.net, loaded.info
    if engine.threads:
        torch.set_num_threads(engine.threads)
    manifest = export_model(net, info, out, args.format, precision=engine.precision, calibration=calibration)
    for line in verify_export(net, out, engine.threads, exact=engine.precision == "fp32"):
        log.info("%s", line)
    log.info(
        "wrote %s: %s, %s, checkpoint sha256 %s",
        out,
        manifest.format,
        manifest.precision,
        manifest.checkpoint_sha256[:16],
    )
    return 0
