"""``m2fp-batch train``: fine-tune M2FP on labelled dirs with Ray Train."""

from __future__ import annotations

import argparse
import logging

from m2fp_batch.errors import UserError
from m2fp_batch.settings import MODEL_FIELDS, EngineSettings, add_engine_arguments
from m2fp_batch.train.config import AugmentSettings, LossSettings, SkinSettings, parse_skin_weights

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="DIR",
        help="job output, export-reviewed or CIHP-layout dirs, COCO .json files (mixed)",
    )
    p.add_argument("--out", required=True, help="the new model dir (configuration.json + pytorch_model.pt)")
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps (default: %(default)s)")
    p.add_argument(
        "--batch", type=int, default=2, help="images per optimizer step, split over the workers (default: %(default)s)"
    )
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate (default: %(default)s)")
    p.add_argument(
        "--crop",
        type=int,
        default=512,
        help="training crop: photos are scaled to this short side (with jitter) and cropped to a square of "
        "this side rounded up to 32 (default: %(default)s)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Ray Train workers (default: one per CPU, at most one per image of --batch and one per 4 GB of "
        "available memory; 1 with --gpu)",
    )
    p.add_argument("--gpu", action="store_true", help="one GPU per worker (nccl); Ray must see GPUs")
    p.add_argument("--skin-balanced", action="store_true", help="balance skin-tone groups when sampling")
    p.add_argument("--skin-weights", default=None, help="per-group loss weights, e.g. light=1.0,medium=1.2,dark=1.5")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=50,
        help="save a checkpoint every N steps and at the end (default: %(default)s)",
    )
    p.add_argument("--no-augment", action="store_true", help="no scale jitter or flip (centred crop)")
    p.add_argument("--num-points", type=int, default=None, help="points per mask (default 12544, upstream)")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the sampling, augmentation and mask points (default: %(default)s)"
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    # the model to start from, named as everywhere else (the trainer reads only weights: no --trust-checkpoint)
    add_engine_arguments(p, only=MODEL_FIELDS)


def main(args: argparse.Namespace) -> int:
    from m2fp_batch.inference.loading import read_config, resolve_model_dir
    from m2fp_batch.train.run import fit
    from m2fp_batch.train.settings import TrainSettings, default_workers

    if args.checkpoint_every < 1:
        raise UserError(f"--checkpoint-every must be >= 1, got {args.checkpoint_every}")
    weights = parse_skin_weights(args.skin_weights)
    engine = EngineSettings.from_args(args)
    model_dir, _ = resolve_model_dir(engine.model, revision=engine.revision)
    cfg, _ = read_config(model_dir)
    short = int(args.crop)
    canvas = -(-short // 32) * 32
    aug = AugmentSettings.off(short, canvas) if args.no_augment else AugmentSettings(short_edge=short, crop_size=canvas)
    settings = TrainSettings(
        data=tuple(args.data),
        init_model=str(model_dir),
        out=args.out,
        steps=args.steps,
        batch_size=args.batch,
        lr=args.lr,
        workers=args.workers if args.workers is not None else default_workers(args.batch, args.gpu),
        use_gpu=args.gpu,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        augment=aug,
        skin=SkinSettings(balanced=args.skin_balanced, weights=weights),
        loss=LossSettings.from_model_config(cfg.extra, num_points=args.num_points),
    )
    fit(settings, resume=args.resume)
    return 0
