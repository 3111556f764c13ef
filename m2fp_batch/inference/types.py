"""What the engine returns for one image: plain numpy, no torch."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def runs_to_mask(toggles: np.ndarray, n: int) -> np.ndarray:
    """(n,) bool from the indices where a mask toggles, starting off: ``[2, 5]`` -> ``00111000...``."""
    lengths = np.diff(np.concatenate([[0], toggles, [n]]))
    return np.repeat(np.arange(len(lengths)) % 2 == 1, lengths)


@dataclass(frozen=True)
class InstanceSet:
    """Instances of one kind (parts or humans) as the official pipeline returns them.

    A mask is kept as the box it can be on and its runs inside the box (bytes per mask grow
    with its outline, not with the image: a full-size copy per instance would not fit an actor's
    memory on a large photo).

    Attributes:
        labels: (N,) int64 class ids (indices into ``ParseResult.class_names``).
        scores: (N,) float64 class probability x mean mask probability.
        boxes: (N, 4) int64 (y0, y1, x0, x1), end-exclusive: the mask is off outside.
        toggles: per instance, (T,) int64 indices into its box flattened in C order where the
            mask switches, starting off.
        shape: (H, W) of the original image.
    """

    labels: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    toggles: tuple[np.ndarray, ...]
    shape: tuple[int, int]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def box_mask(self, i: int) -> tuple[tuple[int, int, int, int], np.ndarray]:
        """The i-th box (y0, y1, x0, x1) and the (y1 - y0, x1 - x0) bool mask inside it."""
        y0, y1, x0, x1 = (int(v) for v in self.boxes[i])
        return (y0, y1, x0, x1), runs_to_mask(self.toggles[i], (y1 - y0) * (x1 - x0)).reshape(y1 - y0, x1 - x0)

    def mask(self, i: int) -> np.ndarray:
        """The i-th mask, (H, W) bool."""
        (y0, y1, x0, x1), crop = self.box_mask(i)
        full = np.zeros(self.shape, bool)
        full[y0:y1, x0:x1] = crop
        return full

    def packed_masks(self) -> np.ndarray:
        """(N, ceil(H * W / 8)) uint8: ``np.packbits`` of each full mask in C order (the parity
        fixture's layout; N full-size masks' bits, so meant for test-sized images)."""
        n = (self.shape[0] * self.shape[1] + 7) // 8
        out = np.zeros((len(self), n), np.uint8)
        for i in range(len(self)):
            out[i] = np.packbits(self.mask(i).reshape(-1))
        return out

    @staticmethod
    def empty(shape: tuple[int, int]) -> InstanceSet:
        return InstanceSet(np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros((0, 4), np.int64), (), shape)


@dataclass(frozen=True)
class Person:
    """One human instance with the image-level parse restricted to it.

    Attributes:
        score: the human instance score.
        bbox: (x0, y0, x1, y1) in pixels, end-exclusive, of the mask.
        mask: (y1 - y0, x1 - x0) bool, the person's mask inside ``bbox``.
        part_map: (y1 - y0, x1 - x0) uint8, the semantic label of each pixel of the
            person (0 outside the mask and on background pixels).
        instance_index: index of this person in ``ParseResult.humans``.
    """

    score: float
    bbox: tuple[int, int, int, int]
    mask: np.ndarray
    part_map: np.ndarray
    instance_index: int

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    def full_mask(self, shape: tuple[int, int]) -> np.ndarray:
        """The mask pasted into an all-False (H, W) image."""
        out = np.zeros(shape, bool)
        x0, y0, x1, y1 = self.bbox
        out[y0:y1, x0:x1] = self.mask
        return out


@dataclass(frozen=True)
class ParseResult:
    """M2FP's answer for one image, at the original resolution.

    Attributes:
        image_size: (H, W) of the input image.
        input_size: (h, w) after the official resize.
        padded_size: (Hp, Wp) fed to the network.
        class_names: the model's classes (parsing classes first, ``Human`` last).
        semantic: (H, W) uint8, argmax of the official semantic probabilities (0 = background).
        semantic_score: (H, W) float16, the max semantic probability, or None when not kept.
        parts: part instances (labels 1..num_parsing-1), score >= 0.1.
        humans: human instances (label num_parsing), score > 0.1.
        persons: one per human instance, in the same order.
        pred_logits: (Q, K + 1) float32 class logits of the last decoder layer.
        pred_masks: (Q, Hp/4, Wp/4) float32 mask logits, only when asked for (raw output).
        timings: seconds per stage for this image (the forward is shared by its batch).
    """

    image_size: tuple[int, int]
    input_size: tuple[int, int]
    padded_size: tuple[int, int]
    class_names: tuple[str, ...]
    semantic: np.ndarray
    semantic_score: np.ndarray | None
    parts: InstanceSet
    humans: InstanceSet
    persons: list[Person]
    pred_logits: np.ndarray
    pred_masks: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
