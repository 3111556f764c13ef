"""Cluster entrypoint: build/update the FiftyOne review dataset from a job output.

Run it where the job output and the team's MongoDB are reachable, e.g. on a Ray cluster::

    ray job submit --address http://127.0.0.1:8265 --working-dir . \\
        --runtime-env-json '{"env_vars": {"FIFTYONE_DATABASE_URI": "mongodb://db-host:27017"}}' \\
        -- python jobs/build_review_dataset.py LABELS --dataset NAME

The arguments are those of ``m2fp-batch review`` (without ``--launch``: open the App from a
workstation with ``m2fp-batch review --dataset NAME --launch``).
"""

from __future__ import annotations

import argparse
import sys

from m2fp_batch.command import run_command
from m2fp_batch.logs import configure_logging
from m2fp_batch.review import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobs/build_review_dataset.py", description=__doc__.splitlines()[0])
    cli.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.launch:
        parser.error("--launch is for a workstation: `m2fp-batch review --dataset NAME --launch`")
    if args.labels is None:
        parser.error("the job output directory is required")
    configure_logging()
    return run_command("review", lambda: cli.main(args))


if __name__ == "__main__":
    sys.exit(main())
