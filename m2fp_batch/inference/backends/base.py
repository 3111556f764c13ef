"""What every backend is: a network forward from a preprocessed batch (N, 3, Hp, Wp) float32
to the raw outputs the shared postprocess takes (``pred_logits`` (N, Q, K+1), ``pred_masks``
(N, Q, Hp/4, Wp/4), float32 torch tensors)."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from m2fp_batch.inference.backends.graph import OUTPUT_NAMES

__all__ = ["Backend", "graph_outputs"]


class Backend(Protocol):
    """The network's forward, loaded once per process (actor, replica)."""

    name: str

    def __call__(self, batch: torch.Tensor) -> dict[str, torch.Tensor]: ...


def graph_outputs(values: list[np.ndarray], copy: bool = False) -> dict[str, torch.Tensor]:
    """An exported graph's outputs as float32 torch tensors; ``copy`` when the runtime will reuse
    or free the arrays' memory."""
    return {
        name: torch.from_numpy(np.array(v, dtype=np.float32, order="C", copy=True if copy else None))
        for name, v in zip(OUTPUT_NAMES, values)
    }
