"""One training run's settings (what ``training.json`` records)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from m2fp_batch.train.config import AugmentConfig, LossConfig, SkinConfig


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
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    skin: SkinConfig = field(default_factory=SkinConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainSettings:
        d = dict(d)
        d["data"] = tuple(d["data"])
        d["augment"] = AugmentConfig(**d["augment"])
        d["skin"] = SkinConfig(**d["skin"])
        d["loss"] = LossConfig(**d["loss"])
        return cls(**d)
