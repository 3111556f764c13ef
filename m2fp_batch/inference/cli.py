"""``m2fp-batch parse IMAGE... --model M --out DIR [--raw FILE.npz]``: the single-photo view.

Photos are read under the engine settings' decode guards and the model sees the job's model input
(``annotate.brightness.model_input``); the PNGs are drawn on the original pixels."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import numpy as np

from m2fp_batch.annotate.brightness import model_input
from m2fp_batch.annotate.render import RENDER_KINDS, render_png
from m2fp_batch.decode import ImageError, decode_image
from m2fp_batch.errors import UserError
from m2fp_batch.inference.device import resolve_device
from m2fp_batch.inference.parser import M2FPParser
from m2fp_batch.inference.raw import write_raw
from m2fp_batch.settings import EngineSettings, add_engine_arguments
from m2fp_batch.storage import Filesystems, StorageError

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE", help="photos to parse")
    p.add_argument("--out", required=True, help="directory for the PNGs and summary.json")
    p.add_argument("--cache-dir", default=None, help="ModelScope download cache")
    p.add_argument("--raw", default=None, help="also write the raw outputs (compact parity layout) to this .npz")
    p.add_argument("--raw-pred-masks", action="store_true", help="include pred_masks (float16) in --raw")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the parse colours, 0..1")
    p.add_argument(
        "--max-batch", type=int, default=1, help="images per forward pass (same padded size only) (default: 1)"
    )
    p.add_argument(
        "--fast-backbone",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="fold BatchNorm + channels-last (off by default: the official op order, less memory)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the backbone and pixel decoder (inductor; cached in $M2FP_COMPILE_CACHE; eager fallback)",
    )
    add_engine_arguments(p, threads_help="torch threads (default: torch's choice)")


def _load_inputs(paths: list[str], settings: EngineSettings) -> tuple[list[str], list[np.ndarray]]:
    """The photos that pass the decode guards; each one that does not is skipped with a message."""
    fss = Filesystems()
    kept, images = [], []
    for path in paths:
        try:
            data = fss.read_bytes(path, settings.max_bytes)  # the max_bytes guard
            images.append(decode_image(data, max_pixels=settings.max_pixels, min_side=settings.min_side))
            kept.append(path)
        except FileNotFoundError:
            log.error("skipping %s: no such file", path)
        except (OSError, StorageError) as e:  # not a regular file, too many bytes, unreadable
            log.error("skipping %s: %s", path, " ".join(str(e).split())[:200])
        except ImageError as e:
            log.error("skipping %s: not a usable image (%s: %s)", path, e.kind, " ".join(e.message.split())[:200])
    return kept, images


def output_stems(paths: list[str]) -> list[str]:
    """One distinct file stem per input (``a``, ``a_2``, ...), even when inputs share a name."""
    used: set[str] = set()
    stems = []
    for path in paths:
        base = stem = Path(path).stem
        n = 1
        while stem in used:
            n += 1
            stem = f"{base}_{n}"
        used.add(stem)
        stems.append(stem)
    return stems


def main(args: argparse.Namespace) -> int:
    """Parse the photos; a photo that cannot be read is skipped (exit 1 at the end)."""
    if not 0.0 <= args.alpha <= 1.0:
        raise UserError(f"--alpha must be within [0, 1], got {args.alpha}")
    if args.max_batch < 1:
        raise UserError(f"--max-batch must be at least 1, got {args.max_batch}")
    settings = EngineSettings.from_args(args)
    resolve_device(settings.device)  # one sentence before any photo is read when CUDA is absent
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {str(out)!r} is a file, not a directory")
    paths, images = _load_inputs(list(args.images), settings)
    if not paths:
        log.error("none of the %d input(s) could be read: nothing to parse", len(args.images))
        return 1
    parser = M2FPParser.from_settings(
        settings,
        max_batch=args.max_batch,
        cache_dir=args.cache_dir,
        fast_backbone=args.fast_backbone,
        torch_compile=args.compile,
    )
    out.mkdir(parents=True, exist_ok=True)
    inputs = [model_input(img, settings.adaptive_brightness)[0] for img in images]
    results = parser.parse(inputs, keep_pred_masks=args.raw_pred_masks)
    summary = [
        _write_pngs(out, path, stem, img, res, args.alpha)
        for path, stem, img, res in zip(paths, output_stems(paths), images, results, strict=True)
    ]
    (out / "summary.json").write_text(
        json.dumps({"model": parser.info.to_dict() if parser.info else None, "images": summary}, indent=1)
    )
    if args.raw:
        write_raw(args.raw, paths, results, with_pred_masks=args.raw_pred_masks)
        log.info("raw outputs written to %s", args.raw)
    skipped = len(args.images) - len(paths)
    if skipped:
        log.error("%d of %d input(s) skipped (see above)", skipped, len(args.images))
    return 1 if skipped else 0


def _write_pngs(out: Path, path: str, stem: str, img: np.ndarray, res, alpha: float) -> dict:
    """The three PNGs of one photo (drawn on the original pixels); its summary.json entry."""
    for kind in RENDER_KINDS:
        (out / f"{stem}_{kind}.png").write_bytes(render_png(kind, img, res.semantic, res.persons, alpha))
    classes = [res.class_names[c] for c in np.unique(res.semantic)]
    log.info("%s: %d people, classes %s", path, len(res.persons), ", ".join(classes))
    return {
        "image": os.fspath(path),
        "outputs": f"{stem}_parse.png, {stem}_overlay.png, {stem}_people.png",
        "size": list(res.image_size),
        "people": [{"score": round(p.score, 4), "bbox": list(p.bbox)} for p in res.persons],
        "classes": classes,
        "timings_s": {k: round(v, 4) for k, v in res.timings.items()},
    }
