"""The ``torch`` backend: the eager PyTorch network (the reference)."""

from __future__ import annotations

import torch

from m2fp_batch.model import M2FP

__all__ = ["TorchBackend"]


class TorchBackend:
    """The eager PyTorch network (the reference backend)."""

    name = "torch"

    def __init__(self, net: M2FP, channels_last: bool = False) -> None:
        self.net = net.eval()
        self.channels_last = channels_last

    def __call__(self, batch: torch.Tensor, keep_aux: bool = False) -> dict:
        with torch.inference_mode():
            if self.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            return self.net(batch, keep_aux=keep_aux)
