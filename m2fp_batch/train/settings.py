"""One training run's settings (what ``training.json`` records)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from m2fp_batch.train.config import AugmentSettings, LossSettings, SkinSettings

# What one CPU worker may take at a 512-px crop (its measured peak: docs/performance.md, "Numbers behind the code").
WORKER_MEMORY_BYTES = 4 * 2**30


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def default_workers(batch_size: int, use_gpu: bool = False) -> int:
    """``train --workers`` when not given: one worker per CPU, at most one per image of the batch
    and one per :data:`WORKER_MEMORY_BYTES` of available memory; one with ``--gpu``. On 2 CPUs,
    two one-thread workers are faster than one two-thread worker (``bench_train.py --part workers``;
    docs/performance.md, "Fine-tuning")."""
    if use_gpu:
        return 1
    memory = _available_memory()
    by_memory = memory // WORKER_MEMORY_BYTES if memory is not None else batch_size
    return max(1, min(os.cpu_count() or 1, batch_size, by_memory))


@dataclass(frozen=True)
class TrainSettings:
    """Everything a worker needs to run the loop; plain values so Ray can ship it."""

    data: tuple[str, ...]
    init_model: str
    out: str
    steps: int = 100
    batch_size: int = 2
    lr: float = 1e-4
    weight_decay: float = 0.05
    backbone_lr_multiplier: float = 0.1
    clip_grad_norm: float = 0.01
    poly_power: float = 0.9
    workers: int = 1
    use_gpu: bool = False
    seed: int = 0
    checkpoint_every: int = 50
    log_every: int = 1
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    skin: SkinSettings = field(default_factory=SkinSettings)
    loss: LossSettings = field(default_factory=LossSettings)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainSettings:
        d = dict(d)
        d["data"] = tuple(d["data"])
        d["augment"] = AugmentSettings(**d["augment"])
        d["skin"] = SkinSettings(**d["skin"])
        d["loss"] = LossSettings(**d["loss"])
        return cls(**d)
