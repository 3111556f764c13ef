"""DeepLab-style ResNet: a 3-conv stem, then bottleneck stages res2..res5."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from m2fp_batch.model.layers import ConvNorm


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels)


class DeepLabStem(nn.Module):
    """Three 3x3 convs (stride 2, 1, 1) and a 3x3/2 max pool: (B, 3, H, W) -> (B, C, H/4, W/4)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = out_channels // 2
        self.out_channels = out_channels
        self.stride = 4
        self.conv1 = ConvNorm(in_channels, mid, 3, stride=2, padding=1, bias=False, norm=_bn(mid))
        self.conv2 = ConvNorm(mid, mid, 3, stride=1, padding=1, bias=False, norm=_bn(mid))
        self.conv3 = ConvNorm(mid, out_channels, 3, stride=1, padding=1, bias=False, norm=_bn(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.conv1(x))
        x = F.relu_(self.conv2(x))
        x = F.relu_(self.conv3(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 -> 1x1 residual block; a projection shortcut when channels change."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        bottleneck_channels: int,
        stride: int = 1,
        num_groups: int = 1,
        stride_in_1x1: bool = False,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.stride = stride
        self.shortcut = (
            ConvNorm(in_channels, out_channels, 1, stride=stride, bias=False, norm=_bn(out_channels))
            if in_channels != out_channels
            else None
        )
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = ConvNorm(
            in_channels, bottleneck_channels, 1, stride=stride_1x1, bias=False, norm=_bn(bottleneck_channels)
        )
        self.conv2 = ConvNorm(
            bottleneck_channels,
            bottleneck_channels,
            3,
            stride=stride_3x3,
            padding=dilation,
            dilation=dilation,
            groups=num_groups,
            bias=False,
            norm=_bn(bottleneck_channels),
        )
        self.conv3 = ConvNorm(bottleneck_channels, out_channels, 1, bias=False, norm=_bn(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        out += x if self.shortcut is None else self.shortcut(x)
        return F.relu_(out)


class DeeplabResNet(nn.Module):
    """Stem plus stages named ``res2``.. (a stage is an ``nn.Sequential`` of blocks).

    ``forward`` returns ``{name: (B, C_name, H / stride_name, W / stride_name)}`` for
    ``out_features``.
    """

    def __init__(self, stem: DeepLabStem, stages: Sequence[Sequence[nn.Module]], out_features: Sequence[str]) -> None:
        super().__init__()
        self.stem = stem
        self.stage_names: list[str] = []
        self._shapes: dict[str, dict[str, int]] = {}
        stride = stem.stride
        for i, blocks in enumerate(stages):
            name = f"res{i + 2}"
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
            for b in blocks:
                stride *= b.stride
            self._shapes[name] = {"channels": blocks[-1].out_channels, "stride": stride}
        self.out_features = list(out_features)

    def output_shape(self) -> dict[str, dict[str, int]]:
        """``{name: {"channels": C, "stride": s}}`` for each output feature."""
        return {k: self._shapes[k] for k in self.out_features}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: (B, 3, H, W) normalised image, H and W multiples of 32."""
        out = {}
        x = self.stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if name in self.out_features:
                out[name] = x
        return out
