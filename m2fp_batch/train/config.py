"""Training settings: loss constants (Mask2Former / M2FP defaults) and run settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from m2fp_batch.deprecation import old_names
from m2fp_batch.errors import UserError

# CIHP left/right class pairs, swapped by a horizontal flip (names as in configuration.json).
FLIP_PAIRS = (("Left-arm", "Right-arm"), ("Left-leg", "Right-leg"), ("Left-shoe", "Right-shoe"))


class TrainSettingsError(UserError, ValueError):
    """A training setting (a flag, or the model's ``loss`` config) is wrong; the message says which."""


@dataclass(frozen=True)
class LossSettings:
    """The M2FP / Mask2Former objective's constants (upstream defaults).

    A ``loss`` object in configuration.json's ``model`` (same field names) overrides them.
    """

    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    num_points: int = 12544  # 112 x 112, points per mask for the losses and the matcher
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    deep_supervision: bool = True

    @classmethod
    def from_model_config(cls, model_cfg: Mapping[str, Any] | None, **overrides: Any) -> LossSettings:
        loss = dict((model_cfg or {}).get("loss", {}) or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(loss) - names)
        if unknown:
            raise TrainSettingsError(f"configuration.json model.loss has unknown fields {unknown}")
        loss.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**loss)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AugmentSettings:
    """Training-time augmentation: short-edge scale jitter, a random crop to a fixed square
    canvas, and a horizontal flip that swaps left/right classes."""

    short_edge: int = 512
    crop_size: int | None = None  # canvas side; None: = short_edge
    min_scale: float = 0.5
    max_scale: float = 1.5
    flip_prob: float = 0.5

    @property
    def canvas(self) -> int:
        return int(self.crop_size or self.short_edge)

    @classmethod
    def off(cls, short_edge: int, crop_size: int | None = None) -> AugmentSettings:
        """No jitter and no flip (the crop stays, centred)."""
        return cls(short_edge=short_edge, crop_size=crop_size, min_scale=1.0, max_scale=1.0, flip_prob=0.0)


@dataclass(frozen=True)
class SkinSettings:
    """Skin-tone awareness: balanced sampling and per-person loss weights by group."""

    balanced: bool = False
    weights: dict[str, float] = field(default_factory=dict)  # group -> weight; missing groups 1.0

    def weight(self, group: str) -> float:
        return float(self.weights.get(group, 1.0))


def parse_skin_weights(text: str | None) -> dict[str, float]:
    """``light=1.0,medium=1.2,dark=1.5`` -> {group: weight}; groups must be known skin groups."""
    from m2fp_batch.schema import SKIN_GROUPS as GROUPS

    if not text:
        return {}
    out: dict[str, float] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in GROUPS:
            raise TrainSettingsError(
                f"--skin-weights: {item!r} is not GROUP=WEIGHT with GROUP one of {', '.join(GROUPS)}"
            )
        try:
            w = float(value)
        except ValueError as e:
            raise TrainSettingsError(f"--skin-weights: {value!r} is not a number") from e
        if not (w >= 0 and w < float("inf")):
            raise TrainSettingsError(f"--skin-weights: weight {value!r} for {name} must be finite and >= 0")
        out[name] = w
    return out


# The old names (one release): "settings" names what a user sets, "config" only a file
__getattr__ = old_names(
    __name__,
    {old: f"{__name__}:{old.replace('Config', 'Settings')}" for old in ("LossConfig", "AugmentConfig", "SkinConfig")},
)
