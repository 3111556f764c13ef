"""The driver: open the data, launch the loop on Ray Train workers (``TorchTrainer``, gloo
on CPU), then write the model dir, ``training.json`` and the loss curve."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from m2fp_batch import localray
from m2fp_batch.data.skin import count_sources, present_sources
from m2fp_batch.errors import UserError
from m2fp_batch.inference.loading import find_checkpoint, sha256_file
from m2fp_batch.logs import configure_logging
from m2fp_batch.train.loop import checkpoint_path, run_loop
from m2fp_batch.train.model_io import write_model_dir
from m2fp_batch.train.sampler import image_groups
from m2fp_batch.train.settings import TrainSettings
from m2fp_batch.train.targets import person_groups

log = logging.getLogger(__name__)

TRAINING_JSON = "training.json"
LOSS_CURVE = "loss_curve.png"


class TrainError(UserError, RuntimeError):
    """Training cannot start or did not finish; the message says why."""


def open_dataset(sources: Sequence[str]):
    """One dataset over every ``--data`` source (job output, export-reviewed or CIHP dirs)."""
    from torch.utils.data import ConcatDataset

    from m2fp_batch.data import ParsingDataset

    parts = [ParsingDataset(s) for s in sources]
    empty = [s for s, p in zip(sources, parts) if len(p) == 0]
    if empty:
        raise TrainError(f"no labelled images in {', '.join(empty)}")
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


@dataclass(frozen=True)
class DataGroups:
    """What the sampler and ``training.json`` need of the data's skin tones."""

    groups: list[str]  # every image's sampling group (see :mod:`m2fp_batch.train.sampler`)
    sources: dict[str, int]  # people per skin-tone source (measured, derived, reviewed)


def dataset_groups(dataset: Sequence) -> DataGroups:
    """Every image's sampling group and how its people's groups were obtained (one pass)."""
    people, sources = [], []
    for i in range(len(dataset)):
        s = dataset[i]
        people.append(list(person_groups(s["humans"], s.get("skin_tones")).values()))
        sources.append(present_sources(s["humans"], s.get("skin_sources")))
    return DataGroups(image_groups(people), count_sources(sources))


def _worker(config: dict) -> None:
    """``train_loop_per_worker``: runs inside each Ray Train worker."""
    import ray.train
    import ray.train.torch

    configure_logging()  # a worker is its own process: the CLI's set-up does not reach it
    settings = TrainSettings.from_dict(config["settings"])
    ctx = ray.train.get_context()
    torch.set_num_threads(max(1, int(config["threads"])))
    dataset = config["records"] if config.get("records") is not None else open_dataset(settings.data)
    run_loop(
        settings,
        dataset,
        config["groups"],
        ctx.get_world_rank(),
        ctx.get_world_size(),
        report=_ray_reporter(settings, ray.train.report),
        resume=config["resume"],
        device=ray.train.torch.get_device() if settings.use_gpu else torch.device("cpu"),
    )


def _ray_reporter(settings: TrainSettings, send: Callable[[dict], None]) -> Callable[[dict], None]:
    """The loop's per-step callback for a Ray Train worker: forwards the metrics to Ray Train
    only at checkpoint steps and the last step. Each ``ray.train.report`` waits until the
    controller drains the worker's one-slot result queue (it polls about every 2 s), so
    reporting every step would hold every step for that long; the log and ``training.json``
    still have every step. Every worker sees the same steps, so the reports stay collective."""

    def report(metrics: dict) -> None:
        step = int(metrics["step"])
        if step % settings.checkpoint_every == 0 or step >= settings.steps:
            send(metrics)

    return report


def _ensure_ray(workers: int) -> None:
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        localray.init_local(  # ends with this process, even after kill -9
            num_cpus=max(os.cpu_count() or 1, workers),
            include_dashboard=False,
            log_to_driver=True,
            configure_logging=False,
        )


def fit(settings: TrainSettings, resume: bool = False, records: Sequence | None = None) -> Path:
    """Run training on Ray Train and write the model dir; returns it.

    ``records``: in-memory samples instead of ``settings.data`` (tests, notebooks)."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    out = Path(settings.out)
    if settings.batch_size < 1 or settings.workers < 1 or settings.steps < 1:
        raise TrainError("--steps, --batch-size and --workers must be at least 1")
    if out.exists() and any(out.iterdir()) and not resume:
        raise TrainError(f"{out} exists and is not empty: pass --resume to continue its run, or a new --out")
    dataset = records if records is not None else open_dataset(settings.data)
    data = dataset_groups(dataset)
    out.mkdir(parents=True, exist_ok=True)
    cpus = os.cpu_count() or 1
    _ensure_ray(settings.workers)
    if settings.use_gpu:
        import ray

        gpus = ray.cluster_resources().get("GPU", 0)
        if gpus < settings.workers:
            raise TrainError(f"--gpu: Ray sees {gpus:g} GPU(s), {settings.workers} worker(s) need one each")
    trainer = TorchTrainer(
        _worker,
        train_loop_config={
            "settings": settings.to_dict(),
            "groups": data.groups,
            "resume": resume,
            "records": list(records) if records is not None else None,
            "threads": max(1, cpus // settings.workers),
        },
        torch_config=TorchConfig(backend="nccl" if settings.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=settings.workers,
            use_gpu=settings.use_gpu,
            resources_per_worker={"CPU": max(0.5, min(1.0, cpus / settings.workers))},
        ),
        run_config=RunConfig(name=f"m2fp-train-{int(time.time())}", storage_path=str((out / "ray").resolve())),
    )
    started = time.time()
    try:
        trainer.fit()
    except Exception as e:  # Ray wraps worker errors in its own types
        raise TrainError(f"training failed: {type(e).__name__}: {str(e)[:2000]}") from e
    return finish(settings, data, time.time() - started)


def finish(settings: TrainSettings, data: DataGroups, seconds: float) -> Path:
    """Model dir from the last checkpoint, plus training.json and the loss-curve PNG."""
    out = Path(settings.out)
    ckpt = torch.load(checkpoint_path(settings), map_location="cpu", weights_only=True)
    write_model_dir(out, Path(settings.init_model), ckpt["model"])
    parent = find_checkpoint(Path(settings.init_model))
    record = {
        "data": list(settings.data),
        "images": len(data.groups),
        "sampling_groups": {g: data.groups.count(g) for g in sorted(set(data.groups))},
        "skin_tone_sources": data.sources,  # people per source; "derived": estimated from the ground truth
        "settings": settings.to_dict(),
        "steps": int(ckpt["step"]),
        "seconds_this_run": round(seconds, 1),
        "losses": ckpt["history"],
        "parent": {"model": settings.init_model, "sha256": sha256_file(parent)},
        "sha256": sha256_file(out / "pytorch_model.pt"),
        "torch": torch.__version__,
    }
    tmp = out / (TRAINING_JSON + ".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, out / TRAINING_JSON)
    plot_losses(ckpt["history"], out / LOSS_CURVE)
    log.info("wrote %s (step %d, final loss %.4f)", out, record["steps"], ckpt["history"][-1]["loss"])
    return out


def plot_losses(history: Sequence[dict], path: Path) -> None:
    """Loss per step (total and terms) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [h["step"] for h in history]
    for key in ("loss", "loss_ce", "loss_mask", "loss_dice"):
        ax.plot(steps, [h[key] for h in history], label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (summed over decoder layers)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
