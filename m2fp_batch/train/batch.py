"""From dataset samples to one worker's share of a training batch.

Every random choice of a sample (augmentation, matcher and loss points) is seeded by
(run seed, step, position in the global batch), so a batch gives the same loss whether one
worker or several compute it, and a resumed run repeats the killed run's steps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from m2fp_batch.inference.preprocess import to_batch
from m2fp_batch.train.augment import augment
from m2fp_batch.train.config import AugmentSettings, SkinSettings
from m2fp_batch.train.targets import Targets, build_targets, person_groups


@dataclass
class Batch:
    """images: (n, 3, S, S) normalised; targets, generators: one per image; positions: the
    images' places in the global batch."""

    images: torch.Tensor
    targets: list[Targets]
    generators: list[torch.Generator]
    positions: list[int]

    def to(self, device: torch.device | str) -> Batch:
        """Images and targets on ``device`` (built on the CPU; the generators stay there)."""
        return Batch(self.images.to(device), [t.to(device) for t in self.targets], self.generators, self.positions)


def sample_seed(seed: int, step: int, position: int) -> int:
    """One integer seed per (run, step, place in the global batch)."""
    return int(np.random.SeedSequence([seed, step, position]).generate_state(1)[0])


def prepare_batch(
    samples: Sequence[Mapping],
    positions: Sequence[int],
    step: int,
    seed: int,
    aug: AugmentSettings,
    skin: SkinSettings,
    flip_perm: np.ndarray,
    num_parsing: int,
    pixel_mean: torch.Tensor,
    pixel_std: torch.Tensor,
) -> Batch:
    """Augment ``samples`` (dicts with image, semantic, humans, skin_tones) and build targets."""
    crops, targets, gens = [], [], []
    for sample, pos in zip(samples, positions, strict=True):
        s = sample_seed(seed, step, pos)
        crop = augment(
            np.asarray(sample["image"]),
            np.asarray(sample["semantic"]),
            np.asarray(sample["humans"]),
            aug,
            flip_perm,
            np.random.default_rng(s),
        )
        groups = person_groups(np.asarray(sample["humans"]), sample.get("skin_tones"))
        weights = {p: skin.weight(g) for p, g in groups.items()}
        targets.append(build_targets(crop.semantic, crop.humans, num_parsing, weights))
        crops.append(crop.image)
        gens.append(torch.Generator().manual_seed(s))
    images = to_batch(crops, pixel_mean, pixel_std, 32)
    return Batch(images, targets, gens, list(positions))
