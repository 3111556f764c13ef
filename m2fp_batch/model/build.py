"""The only place that knows architecture numbers: they all come from the model dir's
``configuration.json`` (ModelScope format, the ``model`` object)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from m2fp_batch.errors import UserError
from m2fp_batch.model.backbone import BottleneckBlock, DeeplabResNet, DeepLabStem
from m2fp_batch.model.layers import ConvNorm
from m2fp_batch.model.m2fp import M2FP, M2FPHead
from m2fp_batch.model.ms_deform_attn import MSDeformAttn
from m2fp_batch.model.pixel_decoder import (
    MSDeformAttnEncoder,
    MSDeformAttnEncoderLayer,
    MSDeformAttnPixelDecoder,
    MSDeformAttnTransformerEncoderOnly,
)
from m2fp_batch.model.transformer_decoder import (
    CrossAttentionLayer,
    FFNLayer,
    MultiScaleMaskedTransformerDecoder,
    SelfAttentionLayer,
)

# ResNet depth -> blocks per stage, as in detectron2.
RESNET_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
STAGE_INDEX = {"res2": 2, "res3": 3, "res4": 4, "res5": 5}
# Fixed by the official code, not by configuration.json.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
SIZE_DIVISIBILITY = 32
DEFORM_POINTS = 4
DECODER_FEATURE_LEVELS = 3


class ModelConfigError(UserError, ValueError):
    """configuration.json lacks a field or has a value the network cannot be built from."""

    prefix = "bad model configuration.json: "


@dataclass(frozen=True)
class M2FPConfig:
    """The ``model`` object of a ModelScope ``configuration.json``, checked."""

    backbone: dict[str, Any]
    encoder: dict[str, Any]
    decoder: dict[str, Any]
    classes: tuple[str, ...]
    num_parsing: int
    parsing_ins_score_thr: float
    single_human: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> M2FPConfig:
        """Accept either the whole configuration.json or its ``model`` object."""
        model = cfg.get("model", cfg)
        missing = [k for k in ("backbone", "encoder", "decoder", "classes", "num_parsing") if k not in model]
        if missing:
            raise ModelConfigError(f"configuration.json: the 'model' object lacks {missing}")
        if model.get("single_human", False):
            raise ModelConfigError(
                "configuration.json: single_human=true (the single-person M2FP model) is not "
                "supported; use the multiple-human model damo/cv_resnet101_image-multiple-human-parsing"
            )
        c = cls(
            backbone=dict(model["backbone"]),
            encoder=dict(model["encoder"]),
            decoder=dict(model["decoder"]),
            classes=tuple(model["classes"]),
            num_parsing=int(model["num_parsing"]),
            parsing_ins_score_thr=float(model.get("parsing_ins_score_thr", 0.5)),
            single_human=False,
            extra={k: v for k, v in model.items() if k not in ("backbone", "encoder", "decoder")},
        )
        if len(c.classes) != c.decoder.get("num_classes"):
            raise ModelConfigError(
                f"configuration.json: {len(c.classes)} class names but decoder.num_classes="
                f"{c.decoder.get('num_classes')}"
            )
        return c


def _stage_blocks(bb: Mapping[str, Any]) -> tuple[int, ...]:
    if "num_blocks" in bb:  # extension for small test models: blocks per stage
        return tuple(int(b) for b in bb["num_blocks"])
    try:
        return RESNET_BLOCKS[int(bb["depth"])]
    except KeyError as e:
        raise ModelConfigError(f"backbone.depth={bb.get('depth')} is not one of {sorted(RESNET_BLOCKS)}") from e


def build_backbone(bb: Mapping[str, Any]) -> DeeplabResNet:
    """DeepLab ResNet from the ``backbone`` object."""
    if bb.get("norm", "BN") != "BN":
        raise ModelConfigError(f"backbone.norm={bb.get('norm')!r}: only 'BN' is supported")
    blocks_per_stage = _stage_blocks(bb)
    out_features = list(bb["out_features"])
    last_stage = max(STAGE_INDEX[f] for f in out_features)
    stem = DeepLabStem(3, int(bb["stem_out_channels"]))
    in_ch = int(bb["stem_out_channels"])
    out_ch = int(bb["res2_out_channels"])
    bottleneck = int(bb["num_groups"]) * int(bb["width_per_group"])
    multi_grid = list(bb.get("res5_multi_grid", [1, 1, 1]))
    stages = []
    for idx, stage in enumerate(range(2, last_stage + 1)):
        dilation = {4: int(bb.get("res4_dilation", 1)), 5: int(bb.get("res5_dilation", 1))}.get(stage, 1)
        n_blocks = blocks_per_stage[idx]
        blocks: list[nn.Module] = []
        for b in range(n_blocks):
            stride = 1 if (b > 0 or idx == 0 or dilation > 1) else 2
            dil = dilation * multi_grid[b] if stage == 5 and b < len(multi_grid) else dilation
            blocks.append(
                BottleneckBlock(
                    in_ch if b == 0 else out_ch,
                    out_ch,
                    bottleneck,
                    stride=stride,
                    num_groups=int(bb["num_groups"]),
                    stride_in_1x1=bool(bb.get("stride_in_1x1", False)),
                    dilation=dil,
                )
            )
        stages.append(blocks)
        in_ch, out_ch, bottleneck = out_ch, out_ch * 2, bottleneck * 2
    return DeeplabResNet(stem, stages, out_features)


def build_pixel_decoder(
    enc: Mapping[str, Any], input_shape: Mapping[str, Mapping[str, int]]
) -> MSDeformAttnPixelDecoder:
    """Pixel decoder from the ``encoder`` object and the backbone's output shapes."""
    in_features = [f for f in enc["in_features"]]
    shapes = sorted(((k, input_shape[k]) for k in in_features), key=lambda kv: kv[1]["stride"])
    in_names = [k for k, _ in shapes]
    t_shapes = [(k, v) for k, v in shapes if k in enc["transformer_in_features"]]
    t_names = [k for k, _ in t_shapes]
    conv_dim = int(enc["conv_dim"])
    nheads = int(enc["transformer_nheads"])
    levels = len(t_names)
    input_proj = [
        nn.Sequential(nn.Conv2d(v["channels"], conv_dim, kernel_size=1), nn.GroupNorm(32, conv_dim))
        for _, v in t_shapes[::-1]
    ]
    layers = [
        MSDeformAttnEncoderLayer(
            MSDeformAttn(conv_dim, levels, nheads, DEFORM_POINTS), conv_dim, int(enc["transformer_dim_feedforward"])
        )
        for _ in range(int(enc["transformer_enc_layers"]))
    ]
    transformer = MSDeformAttnTransformerEncoderOnly(MSDeformAttnEncoder(layers), levels, conv_dim)
    min_stride = min(v["stride"] for _, v in t_shapes)
    num_fpn = int(math.log2(min_stride) - math.log2(int(enc["common_stride"])))
    lateral, output = [], []
    for _, v in shapes[:num_fpn]:
        lateral.append(ConvNorm(v["channels"], conv_dim, 1, bias=False, norm=nn.GroupNorm(32, conv_dim)))
        output.append(
            ConvNorm(
                conv_dim,
                conv_dim,
                3,
                padding=1,
                bias=False,
                norm=nn.GroupNorm(32, conv_dim),
                activation=nn.functional.relu,
            )
        )
    mask_features = nn.Conv2d(conv_dim, int(enc["mask_dim"]), kernel_size=1)
    return MSDeformAttnPixelDecoder(
        in_names, t_names, input_proj, transformer, lateral, output, mask_features, conv_dim, DECODER_FEATURE_LEVELS
    )


def build_transformer_decoder(dec: Mapping[str, Any], in_channels: int) -> MultiScaleMaskedTransformerDecoder:
    """Masked-attention decoder from the ``decoder`` object."""
    hidden = int(dec["hidden_dim"])
    if in_channels != hidden or dec.get("enforce_input_project", False):
        raise ModelConfigError("decoder input projection (conv_dim != hidden_dim) is not supported")
    if dec.get("pre_norm", False):
        raise ModelConfigError("decoder.pre_norm=true is not supported (M2FP uses post-norm)")
    nheads = int(dec["nheads"])
    n = int(dec["dec_layers"])
    return MultiScaleMaskedTransformerDecoder(
        [SelfAttentionLayer(hidden, nheads) for _ in range(n)],
        [CrossAttentionLayer(hidden, nheads) for _ in range(n)],
        [FFNLayer(hidden, int(dec["dim_feedforward"])) for _ in range(n)],
        hidden_dim=hidden,
        num_queries=int(dec["num_queries"]),
        num_classes=int(dec["num_classes"]),
        mask_dim=int(dec["mask_dim"]),
        nheads=nheads,
        num_feature_levels=DECODER_FEATURE_LEVELS,
    )


def build_m2fp(cfg: M2FPConfig | Mapping[str, Any]) -> M2FP:
    """Build the (uninitialised) network for a configuration."""
    if not isinstance(cfg, M2FPConfig):
        cfg = M2FPConfig.from_dict(cfg)
    try:
        backbone = build_backbone(cfg.backbone)
        pixel_decoder = build_pixel_decoder(cfg.encoder, backbone.output_shape())
        predictor = build_transformer_decoder(cfg.decoder, int(cfg.encoder["conv_dim"]))
    except KeyError as e:
        raise ModelConfigError(f"configuration.json lacks the architecture field {e}") from e
    return M2FP(backbone, M2FPHead(pixel_decoder, predictor), PIXEL_MEAN, PIXEL_STD, SIZE_DIVISIBILITY)
