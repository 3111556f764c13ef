"""``m2fp-batch serve --model M [--host 127.0.0.1] [--port 8000] [--replicas N] [--max-batch B]``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any

from m2fp_batch import localray
from m2fp_batch.errors import UserError
from m2fp_batch.inference.loading import find_checkpoint, resolve_model_dir
from m2fp_batch.serve.settings import SERVE_ENGINE, ServeSettings
from m2fp_batch.settings import EngineSettings, add_engine_arguments

log = logging.getLogger(__name__)
APP_NAME = "m2fp"


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = ServeSettings()
    p.add_argument("--host", default=d.host, help="address to listen on (default: %(default)s, loopback only)")
    p.add_argument("--port", type=int, default=d.port, help="HTTP port (default: %(default)s)")
    p.add_argument("--replicas", type=int, default=d.replicas, help="model replicas (default: %(default)s)")
    p.add_argument(
        "--max-batch",
        type=int,
        default=d.max_batch,
        help="images per forward pass (same padded size; 1 is fastest on CPU) (default: %(default)s)",
    )
    p.add_argument("--batch-wait-s", type=float, default=d.batch_wait_s, help="wait to fill a batch (seconds)")
    p.add_argument(
        "--queue", type=int, default=d.queue_per_replica, help="waiting requests per replica before 503 (%(default)s)"
    )
    p.add_argument("--max-body-mb", type=float, default=d.max_body_bytes / 2**20, help="request body limit (MiB)")
    p.add_argument("--address", default=None, help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument(
        "--gpus-per-replica",
        type=float,
        default=d.gpus_per_replica,
        help="GPUs per replica with --device cuda or auto (a fraction: replicas share one GPU) (default: %(default)s)",
    )
    ls = p.add_argument_group("Label Studio ML backend (/ls/predict, /ls/setup, /ls/health, /ls/webhook)")
    ls.add_argument(
        "--reviewed-out",
        metavar="DIR",
        help="write each task Label Studio reports annotated (/ls/webhook) here, in the export-reviewed layout",
    )
    ls.add_argument(
        "--allow-fetch",
        action="store_true",
        help="fetch task photos from hosts other than the connected Label Studio (off: no SSRF through the backend)",
    )
    ls.add_argument(
        "--ls-auth-env",
        metavar="VAR",
        help="require basic auth on /ls/*: VAR holds USER:PASSWORD (Label Studio's ML-backend basic-auth settings)",
    )
    add_engine_arguments(p, threads_help="torch threads per replica (default: CPUs / replicas)", base=SERVE_ENGINE)


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    return ServeSettings(
        engine=EngineSettings.from_args(args, base=SERVE_ENGINE),
        host=args.host,
        port=args.port,
        replicas=args.replicas,
        max_batch=args.max_batch,
        batch_wait_s=args.batch_wait_s,
        queue_per_replica=args.queue,
        max_body_bytes=int(args.max_body_mb * 2**20),
        address=args.address or os.environ.get("RAY_ADDRESS") or None,
        gpus_per_replica=args.gpus_per_replica,
        reviewed_out=str(Path(args.reviewed_out).expanduser().resolve()) if args.reviewed_out else None,
        allow_fetch=args.allow_fetch,
        ls_auth_env=args.ls_auth_env,
    )


def application(args: dict[str, Any]):
    """The Serve application of ``m2fp-batch serve`` for a cluster that runs it from a config file: a
    KubeRay RayService's ``serveConfigV2`` or ``serve deploy`` (``import_path:
    m2fp_batch.serve.cli:application``, deploy/rayservice.yaml).

    ``args`` are this command's flags without their dashes (``model: /models/m2fp``, ``replicas: 2``;
    ``true`` for a switch), parsed and validated as on the command line. Where the HTTP server
    listens is the config's ``http_options``, not ``--host``/``--port``.
    """
    parser = argparse.ArgumentParser(prog="m2fp-batch serve (serveConfigV2 args)", exit_on_error=False)
    add_arguments(parser)
    argv = []
    for key, value in args.items():
        flag = "--" + str(key).replace("_", "-")
        argv += [flag] if value is True else [] if value is False else [flag, str(value)]
    try:
        parsed, unknown = parser.parse_known_args(argv)
    except argparse.ArgumentError as e:
        raise UserError(f"serveConfigV2 args: {e}") from e
    if unknown:
        raise UserError(f"serveConfigV2 args: unknown {' '.join(unknown)}; the keys are `m2fp-batch serve`'s flags")
    settings = settings_from_args(parsed)
    from m2fp_batch.serve.app import build_app

    return build_app(settings)


def _placed(settings: ServeSettings) -> ServeSettings:
    """On this machine (no cluster), ``--device`` checked before Ray starts (one sentence when CUDA
    is absent) and ``auto`` resolved to what torch sees; a cluster's replicas check their own."""
    if settings.address or settings.engine.device == "cpu":
        return settings
    from m2fp_batch.inference.device import resolve_device

    device = resolve_device(settings.engine.device).type
    return dataclasses.replace(settings, engine=dataclasses.replace(settings.engine, device=device))


def _start_ray(settings: ServeSettings):
    import ray

    if settings.address:
        log.info("joining the Ray cluster at %s", settings.address)
        ray.init(address=settings.address)
    else:
        log.info("starting a local Ray")
        localray.init_local(include_dashboard=False)  # ends with this process, even after kill -9
    return ray


def _port_taken(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on, or None."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as e:
            return f"cannot listen on {host}:{port}: {e.strerror or e}; pick another --port or --host"
    return None


def main(args: argparse.Namespace) -> int:
    settings = _placed(settings_from_args(args))
    problem = None if settings.address else _port_taken(settings.host, settings.port)
    if problem:
        raise UserError(problem)
    # a clear sentence (ModelLoadError) before Ray starts, not a replica that fails to start
    find_checkpoint(resolve_model_dir(settings.engine.model, settings.engine.revision)[0])
    ray = _start_ray(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which installs its own handlers
        signal.signal(sig, lambda *_: stop.set())
    from ray import serve

    from m2fp_batch.serve.app import build_app

    try:
        serve.start(http_options={"host": settings.host, "port": settings.port})
        serve.run(build_app(settings), name=APP_NAME, route_prefix="/", blocking=False)
        log.info(
            "serving %s on http://%s:%d/ (%d replica(s), batch %d); Ctrl-C stops",
            settings.engine.model, settings.host, settings.port, settings.replicas, settings.max_batch,
        )  # fmt: skip
        print(json.dumps({"ready": f"http://{settings.host}:{settings.port}/"}), flush=True)
        while not stop.wait(0.5):
            pass
        log.info("stopping")
    finally:
        if settings.address:
            serve.delete(APP_NAME)
        else:
            serve.shutdown()
        ray.shutdown()
    return 0
