"""Training targets from label maps, as M2FP builds them.

Per image: one background instance (class 0), then for every person one person instance
(class ``num_parsing``, the model's "Human" class) followed by that person's part instances
(one per part class present inside the person's mask). Every instance carries a loss weight
(the skin-tone weight of its person; the background instance takes the image's weight).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

IGNORE_LABEL = 255  # semantic value of pixels outside the image (padding) or unlabelled


@dataclass
class Targets:
    """One image's instances.

    labels: (T,) int64 class ids; masks: (T, H, W) bool; weights: (T,) float32 loss weights.
    """

    labels: torch.Tensor
    masks: torch.Tensor
    weights: torch.Tensor
    image_weight: float = 1.0  # weight of the queries matched to nothing (mean of its people's)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> Targets:
        return Targets(self.labels.to(device), self.masks.to(device), self.weights.to(device), self.image_weight)


def person_ids(humans: np.ndarray) -> list[int]:
    """Sorted non-zero person ids of a person-id map."""
    ids = np.unique(humans)
    return [int(i) for i in ids if i != 0]


def person_groups(humans: np.ndarray, skin_tones: Sequence[str] | Mapping[int, str] | None) -> dict[int, str]:
    """Skin-tone group per person id.

    ``skin_tones`` is a mapping {person id: group} or a sequence whose k-th entry is person
    id k + 1 (the ``ParsingDataset`` contract); missing entries are ``unknown``.
    """
    ids = person_ids(humans)
    if skin_tones is None:
        return {i: "unknown" for i in ids}
    if isinstance(skin_tones, Mapping):
        return {i: str(skin_tones.get(i, "unknown")) for i in ids}
    tones = list(skin_tones)
    return {i: str(tones[i - 1]) if 0 < i <= len(tones) else "unknown" for i in ids}


def build_targets(
    semantic: np.ndarray,
    humans: np.ndarray,
    num_parsing: int,
    person_weights: Mapping[int, float] | None = None,
) -> Targets:
    """Instances of one image from its semantic (H, W) and person-id (H, W) maps.

    Pixels with ``semantic == IGNORE_LABEL`` belong to no instance. The background instance
    is ``humans == 0`` when that agrees with ``semantic == 0`` (as in CIHP), else ``semantic
    == 0``. Person ``p``'s part of class ``c`` is ``(humans == p) & (semantic == c)``, c >= 1.
    """
    semantic = np.asarray(semantic)
    humans = np.asarray(humans)
    if semantic.shape != humans.shape:
        raise ValueError(f"semantic {semantic.shape} and humans {humans.shape} differ in shape")
    valid = semantic != IGNORE_LABEL
    weights_of = dict(person_weights or {})
    ids = person_ids(humans[valid]) if valid.any() else []
    image_weight = float(np.mean([weights_of.get(p, 1.0) for p in ids])) if ids else 1.0
    no_person = (humans == 0) & valid
    sem_bg = (semantic == 0) & valid
    labels: list[int] = [0]
    masks: list[np.ndarray] = [no_person if np.array_equal(no_person, sem_bg) else sem_bg]
    weights: list[float] = [image_weight]
    for p in ids:
        person = (humans == p) & valid
        w = float(weights_of.get(p, 1.0))
        labels.append(num_parsing)
        masks.append(person)
        weights.append(w)
        for c in np.unique(semantic[person]):
            if 0 < c < num_parsing:
                labels.append(int(c))
                masks.append(person & (semantic == c))
                weights.append(w)
    keep = [i for i, m in enumerate(masks) if m.any()]
    stacked = np.stack([masks[i] for i in keep]) if keep else np.zeros((0, *semantic.shape), bool)
    return Targets(
        labels=torch.tensor([labels[i] for i in keep], dtype=torch.int64),
        masks=torch.from_numpy(stacked),
        weights=torch.tensor([weights[i] for i in keep], dtype=torch.float32),
        image_weight=image_weight,
    )
