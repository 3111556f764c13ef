"""``m2fp-batch run``: label an image store with a Ray job, writing Parquet.

Also the body of ``jobs/parse_images.py`` (the ``ray job submit`` entrypoint).
"""

from __future__ import annotations

import argparse
import json
import logging

from m2fp_batch.pipeline.config import JobConfig, parse_set

log = logging.getLogger("m2fp_batch.job")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", help="image directory (recursive), .parquet/.csv manifest, local or s3://")
    parser.add_argument("--output", help="output directory (local or s3://); rerunning into it resumes")
    parser.add_argument("--model", help="model dir or ModelScope id (default: the official M2FP)")
    parser.add_argument("--config", help="YAML settings file (see configs/default.yaml)")
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        default=None,
        help="allow a checkpoint that needs full unpickling (it can run code: only for weights you trust)",
    )
    parser.add_argument("--overwrite", action="store_true", default=None, help="discard an earlier run's output")
    parser.add_argument("--address", help="Ray address (default: RAY_ADDRESS, else start a local Ray)")
    parser.add_argument("--batch-size", type=int, help="images per actor call and forward pass")
    parser.add_argument("--shard-size", type=int, help="images per output Parquet file")
    parser.add_argument("--short-edge", type=int, help="model input short edge (default 640, the official)")
    parser.add_argument("--cpus-per-actor", type=float, help="CPUs (= torch threads) per model actor")
    parser.add_argument("--max-actors", type=int, help="upper bound of the actor pool (default: CPUs / cpus-per-actor)")
    parser.add_argument("--num-cpus", type=int, help="CPUs of a local Ray (ignored when joining a cluster)")
    parser.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override any setting of the config file (repeatable)"
    )


def config_from_args(args: argparse.Namespace) -> JobConfig:
    overrides = parse_set(getattr(args, "set", None))
    for key in (
        "input",
        "output",
        "model",
        "trust_checkpoint",
        "overwrite",
        "address",
        "batch_size",
        "shard_size",
        "short_edge",
        "cpus_per_actor",
        "max_actors",
        "num_cpus",
    ):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    return JobConfig.from_sources(getattr(args, "config", None), overrides)


def main(args: argparse.Namespace) -> int:
    """Validate the settings, run the job, print the summary (errors: :mod:`m2fp_batch.errors`)."""
    cfg = config_from_args(args)
    from m2fp_batch.pipeline.job import run_job

    summary = run_job(cfg)
    print(json.dumps({k: summary[k] for k in ("output", "inputs", "rows", "complete", "status", "error_kinds")}))
    return 0 if summary["complete"] else 1


def entrypoint(argv: list[str] | None = None) -> int:
    """Standalone entry (``python jobs/parse_images.py ...``), same flags as ``m2fp-batch run``."""
    parser = argparse.ArgumentParser(prog="parse_images.py", description="M2FP labelling job (Ray)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_arguments(parser)
    args = parser.parse_args(argv)
    from m2fp_batch.errors import configure_logging, run_command

    configure_logging(args.verbose)

    return run_command("run", lambda: main(args), verbose=args.verbose)
