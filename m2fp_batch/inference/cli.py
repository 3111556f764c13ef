"""``m2fp-batch parse IMAGE... --model M --out DIR [--raw FILE.npz]``: the single-photo view."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image

from m2fp_batch.annotate.render import overlay, parse_image, people_cutout
from m2fp_batch.inference.engine import M2FPParser
from m2fp_batch.inference.loading import DEFAULT_MODEL_ID, ModelLoadError
from m2fp_batch.inference.preprocess import load_image
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


def main(args: argparse.Namespace) -> int:
    if not 0.0 <= args.alpha <= 1.0:
        raise SystemExit(f"--alpha must be within [0, 1], got {args.alpha}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        parser = M2FPParser.from_pretrained(
            args.model,
            revision=args.revision,
            cache_dir=args.cache_dir,
            trust_checkpoint=args.trust_checkpoint,
            threads=args.threads,
            max_batch=args.batch_size,
            fast_backbone=args.fast_backbone,
            torch_compile=args.compile,
        )
    except ModelLoadError as e:
        log.error("%s", e)
        return 2
    images = [load_image(p) for p in args.images]
    results = parser.parse(images, keep_pred_masks=args.raw_pred_masks)
    summary = []
    stems: dict[str, int] = {}
    for path, img, res in zip(args.images, images, results):
        stem = Path(path).stem
        stems[stem] = stems.get(stem, 0) + 1
        if stems[stem] > 1:
            stem = f"{stem}_{stems[stem]}"
        people = np.zeros(res.image_size, bool)
        for person in res.persons:
            x0, y0, x1, y1 = person.bbox
            people[y0:y1, x0:x1] |= person.mask
        Image.fromarray(parse_image(res.semantic)).save(out / f"{stem}_parse.png")
        Image.fromarray(overlay(img, res.semantic, args.alpha)).save(out / f"{stem}_overlay.png")
        Image.fromarray(people_cutout(img, people), mode="RGBA").save(out / f"{stem}_people.png")
        present = np.unique(res.semantic)
        summary.append(
            {
                "image": os.fspath(path),
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
        write_raw(args.raw, args.images, results, with_pred_masks=args.raw_pred_masks)
        log.info("raw outputs written to %s", args.raw)
    return 0
