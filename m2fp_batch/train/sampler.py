"""Skin-tone-balanced sampling.

Rule: every image gets a *sampling group*. An image whose people are all of one known
group (light, medium, dark) takes that group. An image with several known groups takes
the rarest of them over the dataset (so mixed images help the group that needs them). An
image with no person of known group takes ``unknown`` (no people at all included). Each
draw picks a group uniformly among the groups present, then an image of that group
uniformly: every present group is drawn 1/G of the time, whatever the dataset's skew.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np

from m2fp_batch.schema import SKIN_GROUPS as GROUPS

KNOWN_GROUPS = tuple(g for g in GROUPS if g != "unknown")


def sampling_group(person_groups: Sequence[str], rarity: Counter | None = None) -> str:
    """The sampling group of an image from its people's groups (see the module rule).
    ``rarity``: persons per group over the dataset (ties and absence: order of GROUPS)."""
    known = [g for g in KNOWN_GROUPS if g in set(person_groups)]
    if not known:
        return "unknown"
    counts = rarity or Counter()
    return min(known, key=lambda g: (counts.get(g, 0), KNOWN_GROUPS.index(g)))


def image_groups(per_image_people: Sequence[Sequence[str]]) -> list[str]:
    """Sampling group of every image, given every image's list of people's groups."""
    rarity = Counter(g for people in per_image_people for g in people)
    return [sampling_group(p, rarity) for p in per_image_people]


class SkinBalancedSampler:
    """Infinite index stream balanced over sampling groups (deterministic for a seed).

    ``draw(n, step)`` gives the n indices of a global batch at ``step``: a function of
    (seed, step) only, so a resumed or re-partitioned run sees the same images.
    """

    def __init__(self, groups: Sequence[str], seed: int = 0, balanced: bool = True) -> None:
        if not len(groups):
            raise ValueError("no images to sample from")
        self.balanced = balanced
        self.seed = seed
        self.n = len(groups)
        self.by_group = {g: np.array([i for i, x in enumerate(groups) if x == g]) for g in GROUPS if g in set(groups)}

    def draw(self, n: int, step: int) -> list[int]:
        rng = np.random.default_rng([self.seed, step])
        if not self.balanced:
            return [int(i) for i in rng.integers(0, self.n, n)]
        names = list(self.by_group)
        picks = rng.integers(0, len(names), n)
        return [int(rng.choice(self.by_group[names[k]])) for k in picks]

    def __iter__(self) -> Iterator[int]:
        step = 0
        while True:
            yield from self.draw(1, step)
            step += 1
