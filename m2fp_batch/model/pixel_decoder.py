"""Pixel decoder: a deformable-attention encoder over res3..res5, then an FPN step to res2."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from m2fp_batch.model.layers import ConvNorm
from m2fp_batch.model.ms_deform_attn import MSDeformAttn
from m2fp_batch.model.position_encoding import PositionEmbeddingSine


class MSDeformAttnEncoderLayer(nn.Module):
    """Post-norm encoder layer: deformable self-attention, then a ReLU FFN."""

    def __init__(self, self_attn: MSDeformAttn, d_model: int, d_ffn: int) -> None:
        super().__init__()
        self.self_attn = self_attn
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(
        self,
        src: torch.Tensor,
        pos: torch.Tensor,
        reference_points: torch.Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
    ) -> torch.Tensor:
        """src, pos: (N, S, C); reference_points: (N, S, L, 2) -> (N, S, C)."""
        src = self.norm1(src + self.self_attn(src + pos, reference_points, src, spatial_shapes))
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class MSDeformAttnEncoder(nn.Module):
    """A stack of encoder layers (keys ``layers.{i}``)."""

    def __init__(self, layers: Sequence[MSDeformAttnEncoderLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    @staticmethod
    def reference_points(spatial_shapes: Sequence[tuple[int, int]], device: torch.device) -> torch.Tensor:
        """Pixel centres of every level, normalised to [0, 1]: (1, S, L, 2) as (x, y)."""
        refs = []
        for h, w in spatial_shapes:
            # arange + 0.5 holds the same values as linspace(0.5, h - 0.5, h), and under tracing
            # (export) h and w stay symbolic sizes instead of becoming constants
            ref_y, ref_x = torch.meshgrid(
                torch.arange(h, dtype=torch.float32, device=device) + 0.5,
                torch.arange(w, dtype=torch.float32, device=device) + 0.5,
                indexing="ij",
            )
            refs.append(torch.stack((ref_x.reshape(-1) / w, ref_y.reshape(-1) / h), -1))
        ref = torch.cat(refs, 0)[None]  # (1, S, 2)
        return ref[:, :, None].expand(-1, -1, len(spatial_shapes), -1)

    def forward(self, src: torch.Tensor, pos: torch.Tensor, spatial_shapes: Sequence[tuple[int, int]]) -> torch.Tensor:
        ref = self.reference_points(spatial_shapes, src.device).expand(src.shape[0], -1, -1, -1)
        for layer in self.layers:
            src = layer(src, pos, ref, spatial_shapes)
        return src


class MSDeformAttnTransformerEncoderOnly(nn.Module):
    """Holds the encoder and the per-level embedding (keys ``encoder.*``, ``level_embed``)."""

    def __init__(self, encoder: MSDeformAttnEncoder, num_levels: int, d_model: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.level_embed = nn.Parameter(torch.zeros(num_levels, d_model))

    def forward(self, srcs: Sequence[torch.Tensor], pos_embeds: Sequence[torch.Tensor]) -> torch.Tensor:
        """srcs, pos_embeds: L maps (N, C, H_l, W_l) -> (N, sum H_l W_l, C)."""
        shapes = [tuple(x.shape[-2:]) for x in srcs]
        src = torch.cat([x.flatten(2).transpose(1, 2) for x in srcs], 1)
        pos = torch.cat(
            [p.flatten(2).transpose(1, 2) + self.level_embed[i].view(1, 1, -1) for i, p in enumerate(pos_embeds)], 1
        )
        return self.encoder(src, pos, shapes)


class MSDeformAttnPixelDecoder(nn.Module):
    """Mask2Former's pixel decoder.

    Args:
        in_features: backbone feature names, high to low resolution (res2..res5).
        in_channels: their channels.
        transformer_in_features: the subset fed to the deformable encoder.
        input_proj: per encoder level (low to high resolution) 1x1 conv + GroupNorm.
        transformer: the deformable encoder.
        lateral_convs, output_convs: the FPN levels below the encoder, high to low
            resolution as created (``adapter_{i}``, ``layer_{i}``).
        mask_features: the final 1x1 conv to ``mask_dim`` channels.
        conv_dim: channels C of the encoder.
    """

    def __init__(
        self,
        in_features: Sequence[str],
        transformer_in_features: Sequence[str],
        input_proj: Sequence[nn.Module],
        transformer: MSDeformAttnTransformerEncoderOnly,
        lateral_convs: Sequence[ConvNorm],
        output_convs: Sequence[ConvNorm],
        mask_features: nn.Conv2d,
        conv_dim: int,
        num_outputs: int = 3,
    ) -> None:
        super().__init__()
        self.in_features = list(in_features)
        self.transformer_in_features = list(transformer_in_features)
        self.input_proj = nn.ModuleList(input_proj)
        self.transformer = transformer
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2)
        self.mask_features = mask_features
        self.num_fpn_levels = len(lateral_convs)
        for i, (lat, out) in enumerate(zip(lateral_convs, output_convs)):
            self.add_module(f"adapter_{i + 1}", lat)
            self.add_module(f"layer_{i + 1}", out)
        self.num_outputs = num_outputs

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """
        Args:
            features: backbone maps ``{name: (N, C_name, H_name, W_name)}``.

        Returns:
            mask_features (N, mask_dim, H/4, W/4) and ``num_outputs`` multi-scale maps
            (N, C, H_l, W_l), low to high resolution.
        """
        srcs, pos = [], []
        for idx, name in enumerate(self.transformer_in_features[::-1]):
            x = features[name].float()
            srcs.append(self.input_proj[idx](x))
            pos.append(self.pe_layer(x))
        y = self.transformer(srcs, pos)
        n = y.shape[0]
        out, start = [], 0
        for src in srcs:  # slices, not split(): their bounds stay symbolic under tracing
            h, w = src.shape[-2:]
            out.append(y[:, start : start + h * w].transpose(1, 2).reshape(n, -1, h, w))
            start = start + h * w
        for idx, name in enumerate(self.in_features[: self.num_fpn_levels][::-1]):
            i = self.num_fpn_levels - idx  # top-down: the last created adapter first
            cur = getattr(self, f"adapter_{i}")(features[name].float())
            # contiguous first: on the encoder's (N, HW, C)-strided view the bilinear kernel's
            # result for one image depends on the batch around it (measured), on NCHW it does not
            up = F.interpolate(out[-1].contiguous(), size=cur.shape[-2:], mode="bilinear", align_corners=False)
            out.append(getattr(self, f"layer_{i}")(cur + up))
        return self.mask_features(out[-1]), out[: self.num_outputs]
