"""``m2fp-batch run``: label an image store with a Ray job, writing Parquet.

Also the body of ``jobs/parse_images.py`` (the ``ray job submit`` entrypoint).
"""

from __future__ import annotations

import argparse
import json
import logging

from m2fp_batch.pipeline.config import JobSettings, parse_set
from m2fp_batch.settings import EngineSettings, add_engine_arguments

log = logging.getLogger("m2fp_batch.job")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", help="image directory (recursive), .parquet/.csv manifest, local or s3://")
    parser.add_argument(
        "--out", "--output", dest="output", help="output directory (local or s3://); rerunning into it resumes"
    )
    parser.add_argument("--config", help="YAML settings file (see configs/default.yaml)")
    parser.add_argument("--overwrite", action="store_true", default=None, help="discard an earlier run's output")
    parser.add_argument("--address", help="Ray address (default: RAY_ADDRESS, else start a local Ray)")
    parser.add_argument(
        "--batch-size",
        type=int,
        help="images labelled per crash-ledger batch, the smallest block an actor call takes (default 4); "
        "forward passes take forward_batch of them",
    )
    parser.add_argument(
        "--shard-size", type=int, help="images per output Parquet file, the unit of resume (default 256)"
    )
    parser.add_argument("--cpus-per-actor", type=float, help="CPUs per model actor (default 1)")
    parser.add_argument("--max-actors", type=int, help="upper bound of the actor pool (default: CPUs / cpus-per-actor)")
    parser.add_argument("--num-cpus", type=int, help="CPUs of a local Ray (ignored when joining a cluster)")
    parser.add_argument(
        "--gpus-per-actor",
        type=float,
        help="GPUs per model actor with --device cuda or auto (a fraction shares one GPU; default 0: CPU actors)",
    )
    parser.add_argument("--video-fps", type=float, help="video frames labelled a second, by time (default 1)")
    parser.add_argument("--video-every-nth", type=int, help="instead of --video-fps: every n-th frame of a video")
    parser.add_argument("--video-max-frames", type=int, help="at most this many frames of each video")
    parser.add_argument("--video-max-seconds", type=float, help="only the first seconds of each video")
    parser.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override any setting of the config file (repeatable)"
    )
    add_engine_arguments(parser, threads_help="torch threads per actor (default: its CPUs, --cpus-per-actor)")


# The job's own flags; the engine flags (add_engine_arguments) are overrides of the same name too.
JOB_FLAGS = ("input", "output", "overwrite", "address", "batch_size", "shard_size", "cpus_per_actor", "max_actors",
             "num_cpus", "gpus_per_actor", "video_fps", "video_every_nth", "video_max_frames",
             "video_max_seconds")  # fmt: skip


def config_from_args(args: argparse.Namespace) -> JobSettings:
    """The config file, then ``--set``, then the flags given (flags left out keep the file's value)."""
    overrides = parse_set(getattr(args, "set", None))
    for key in (*JOB_FLAGS, *EngineSettings.names()):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    return JobSettings.from_sources(getattr(args, "config", None), overrides)


def main(args: argparse.Namespace) -> int:
    """Validate the settings, run the job, print the summary (errors: :mod:`m2fp_batch.errors`)."""
    cfg = config_from_args(args)
    from m2fp_batch.pipeline.job import run_job

    summary = run_job(cfg).to_dict()
    print(json.dumps({k: summary[k] for k in ("output", "inputs", "rows", "complete", "status", "error_kinds")}))
    return 0 if summary["complete"] else 1


def entrypoint(argv: list[str] | None = None) -> int:
    """Standalone entry (``python jobs/parse_images.py ...``), same flags as ``m2fp-batch run``."""
    parser = argparse.ArgumentParser(prog="parse_images.py", description="M2FP labelling job (Ray)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_arguments(parser)
    args = parser.parse_args(argv)
    from m2fp_batch.command import run_command
    from m2fp_batch.logs import configure_logging

    configure_logging(args.verbose)

    return run_command("run", lambda: main(args), verbose=args.verbose)
