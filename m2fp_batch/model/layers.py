"""Small building blocks shared by the backbone and the pixel decoder."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F


class ConvNorm(nn.Conv2d):
    """A ``Conv2d`` followed by an optional norm and activation (detectron2's ``Conv2d``).

    The norm is a child called ``norm`` so checkpoint keys read ``<name>.norm.weight``.
    """

    def __init__(
        self,
        *args,
        norm: nn.Module | None = None,
        activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


def fold_batchnorm_(module: nn.Module, memory_format: torch.memory_format = torch.contiguous_format) -> int:
    """Fold every eval-mode ``BatchNorm2d`` of a :class:`ConvNorm` into its convolution.

    ``y = gamma * (conv(x) - mean) / sqrt(var + eps) + beta`` becomes one convolution with
    scaled weights and a bias. Inference only: call it after the weights are loaded. The
    folded weights are new tensors in ``memory_format`` (the loaded ones, possibly pages of a
    memory-mapped checkpoint, are never written). Returns the number of folded norms.
    """
    count = 0
    for m in module.modules():
        if isinstance(m, ConvNorm) and isinstance(m.norm, nn.BatchNorm2d):
            bn = m.norm
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            bias = bn.bias - bn.running_mean * scale
            if m.bias is not None:
                bias = bias + m.bias * scale
            with torch.no_grad():
                weight = (m.weight * scale.reshape(-1, 1, 1, 1)).contiguous(memory_format=memory_format)
                m.weight = nn.Parameter(weight)
                m.bias = nn.Parameter(bias.detach().clone())
            m.norm = None
            count += 1
    return count


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (keys ``layers.{i}``)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims_in, dims_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return x
