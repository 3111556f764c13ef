"""``m2fp-batch parse IMAGE... --model M --out DIR [--raw FILE.npz]``: the single-photo view."""

from __future__ import annotations

import argparse
import json
import logging
import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image

from m2fp_batch.annotate.render import RENDER_KINDS, render_png
from m2fp_batch.errors import UserError
from m2fp_batch.inference.engine import M2FPParser
from m2fp_batch.inference.loading import DEFAULT_MODEL_ID
from m2fp_batch.inference.preprocess import SHORT_EDGE, load_image
from m2fp_batch.inference.raw import write_raw

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="photos to parse")
    p.add_argument("--model", default=DEFAULT_MODEL_ID, help="local model dir or ModelScope id (default: %(default)s)")
    p.add_argument("--revision", default=None, help="ModelScope revision")
    p.add_argument("--cache-dir", default=None, help="ModelScope download cache")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow a checkpoint that needs full unpickling")
    p.add_argument("--out", required=True, help="directory for the PNGs")
    p.add_argument("--raw", default=None, help="also write the raw outputs (compact parity layout) to this .npz")
    p.add_argument("--raw-pred-masks", action="store_true", help="include pred_masks (float16) in --raw")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the parse colours, 0..1")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--batch-size", type=int, default=1, help="images per forward pass (same-size images only)")
    p.add_argument("--short-edge", type=int, default=SHORT_EDGE, help="model input short edge (default: %(default)s)")
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


def _load_inputs(paths: list[str]) -> tuple[list[str], list[np.ndarray]]:
    """The photos that load; each one that does not is skipped with a message."""
    kept, images = [], []
    for path in paths:
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block, /dev/zero never ends
                raise IsADirectoryError(f"{path} is not a regular file")
            images.append(load_image(path))
            kept.append(path)
        except FileNotFoundError:
            log.error("skipping %s: no such file", path)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            log.error("skipping %s: not a readable image (%s)", path, " ".join(str(e).split())[:200])
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
    if args.short_edge < 1:
        raise UserError(f"--short-edge must be at least 1, got {args.short_edge}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {str(out)!r} is a file, not a directory")
    paths, images = _load_inputs(list(args.images))
    if not paths:
        log.error("none of the %d input(s) could be read: nothing to parse", len(args.images))
        return 1
    parser = M2FPParser.from_pretrained(
        args.model,
        revision=args.revision,
        cache_dir=args.cache_dir,
        trust_checkpoint=args.trust_checkpoint,
        threads=args.threads,
        max_batch=args.batch_size,
        fast_backbone=args.fast_backbone,
        short_edge=args.short_edge,
        torch_compile=args.compile,
    )
    out.mkdir(parents=True, exist_ok=True)
    results = parser.parse(images, keep_pred_masks=args.raw_pred_masks)
    summary = []
    for path, stem, img, res in zip(paths, output_stems(paths), images, results, strict=True):
        for kind in RENDER_KINDS:
            (out / f"{stem}_{kind}.png").write_bytes(render_png(kind, img, res.semantic, res.persons, args.alpha))
        present = np.unique(res.semantic)
        summary.append(
            {
                "image": os.fspath(path),
                "outputs": f"{stem}_parse.png, {stem}_overlay.png, {stem}_people.png",
                "size": list(res.image_size),
                "people": [{"score": round(p.score, 4), "bbox": list(p.bbox)} for p in res.persons],
                "classes": [res.class_names[c] for c in present],
                "timings_s": {k: round(v, 4) for k, v in res.timings.items()},
            }
        )
        log.info("%s: %d people, classes %s", path, len(res.persons), ", ".join(summary[-1]["classes"]))
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
