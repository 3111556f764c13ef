"""Mask2Former's masked-attention transformer decoder and its prediction heads."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from m2fp_batch.model.layers import MLP
from m2fp_batch.model.position_encoding import PositionEmbeddingSine


class SelfAttentionLayer(nn.Module):
    """Post-norm self-attention over the queries (keys ``self_attn``, ``norm``)."""

    def __init__(self, d_model: int, nhead: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.0)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tgt: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        """tgt, query_pos: (Q, N, C) -> (Q, N, C)."""
        q = tgt + query_pos
        return self.norm(tgt + self.self_attn(q, q, value=tgt, need_weights=False)[0])


class CrossAttentionLayer(nn.Module):
    """Post-norm masked cross-attention from queries to one feature level."""

    def __init__(self, d_model: int, nhead: int) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.0)
        self.norm = nn.LayerNorm(d_model)

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        pos: torch.Tensor,
        query_pos: torch.Tensor,
    ) -> torch.Tensor:
        """tgt, query_pos: (Q, N, C); memory, pos: (S, N, C); memory_mask: (N * heads, Q, S)
        bool, True where attention is blocked -> (Q, N, C)."""
        out = self.multihead_attn(
            tgt + query_pos, memory + pos, value=memory, attn_mask=memory_mask, need_weights=False
        )[0]
        return self.norm(tgt + out)


class FFNLayer(nn.Module):
    """Post-norm ReLU feed-forward block (keys ``linear1``, ``linear2``, ``norm``)."""

    def __init__(self, d_model: int, dim_feedforward: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tgt: torch.Tensor) -> torch.Tensor:
        return self.norm(tgt + self.linear2(F.relu(self.linear1(tgt))))


class MultiScaleMaskedTransformerDecoder(nn.Module):
    """Queries attend, layer by layer, to one of 3 feature levels in turn, masked by the
    previous layer's mask prediction.

    Args:
        self_attention_layers, cross_attention_layers, ffn_layers: one of each per layer.
        hidden_dim: C.
        num_queries: Q.
        num_classes: classes K (the class head has K + 1 outputs, the last is no-object).
        mask_dim: channels of the mask features.
        nheads: attention heads (for the attention-mask layout).
        num_feature_levels: feature levels cycled through (3).
    """

    def __init__(
        self,
        self_attention_layers: Sequence[SelfAttentionLayer],
        cross_attention_layers: Sequence[CrossAttentionLayer],
        ffn_layers: Sequence[FFNLayer],
        hidden_dim: int,
        num_queries: int,
        num_classes: int,
        mask_dim: int,
        nheads: int,
        num_feature_levels: int = 3,
    ) -> None:
        super().__init__()
        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2)
        self.num_heads = nheads
        self.num_layers = len(self_attention_layers)
        self.num_classes = num_classes
        self.num_queries = num_queries
        self.num_feature_levels = num_feature_levels
        self.transformer_self_attention_layers = nn.ModuleList(self_attention_layers)
        self.transformer_cross_attention_layers = nn.ModuleList(cross_attention_layers)
        self.transformer_ffn_layers = nn.ModuleList(ffn_layers)
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(num_feature_levels, hidden_dim)
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    def forward(
        self, x: Sequence[torch.Tensor], mask_features: torch.Tensor, keep_aux: bool = False
    ) -> dict[str, torch.Tensor | list[dict[str, torch.Tensor]]]:
        """
        Args:
            x: ``num_feature_levels`` maps (N, C, H_l, W_l), low to high resolution.
            mask_features: (N, mask_dim, H/4, W/4).
            keep_aux: also return every intermediate layer's predictions.

        Returns:
            ``pred_logits`` (N, Q, K + 1) and ``pred_masks`` (N, Q, H/4, W/4) of the last
            layer; ``aux_outputs`` (a list of the same per earlier layer) when asked.
        """
        src, pos, sizes = [], [], []
        for i in range(self.num_feature_levels):
            sizes.append(tuple(x[i].shape[-2:]))
            pos.append(self.pe_layer(x[i]).flatten(2).permute(2, 0, 1))
            src.append((x[i].flatten(2) + self.level_embed.weight[i][None, :, None]).permute(2, 0, 1))
        n = src[0].shape[1]
        query_embed = self.query_embed.weight.unsqueeze(1).repeat(1, n, 1)
        output = self.query_feat.weight.unsqueeze(1).repeat(1, n, 1)

        mask_features = mask_features.contiguous()
        # Bilinear resizing is linear, so a layer's attention mask (its mask logits resized to
        # the next level's size) is computed from mask features resized once per level:
        # (Q x C) @ (C x h_l w_l) instead of resizing Q full-size masks every layer.
        small_features = [
            F.interpolate(mask_features, size=size, mode="bilinear", align_corners=False).flatten(2) for size in sizes
        ]
        aux = []
        cls, masks, attn_mask = self._heads(output, mask_features, small_features[0], full=keep_aux)
        for i in range(self.num_layers):
            if keep_aux:
                aux.append({"pred_logits": cls, "pred_masks": masks})
            level = i % self.num_feature_levels
            attn_mask = attn_mask & ~attn_mask.all(-1, keepdim=True)  # a fully blocked row attends everywhere
            output = self.transformer_cross_attention_layers[i](output, src[level], attn_mask, pos[level], query_embed)
            output = self.transformer_self_attention_layers[i](output, query_embed)
            output = self.transformer_ffn_layers[i](output)
            last = i == self.num_layers - 1
            nxt = None if last else small_features[(i + 1) % self.num_feature_levels]
            cls, masks, attn_mask = self._heads(output, mask_features, nxt, full=keep_aux or last)
        out: dict[str, torch.Tensor | list[dict[str, torch.Tensor]]] = {"pred_logits": cls, "pred_masks": masks}
        if keep_aux:
            out["aux_outputs"] = aux
        return out

    def _heads(
        self,
        output: torch.Tensor,
        mask_features: torch.Tensor,
        small_features: torch.Tensor | None,
        full: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Prediction heads on the decoder state (Q, N, C).

        Returns class logits (N, Q, K+1); mask logits (N, Q, H/4, W/4) when ``full``; and,
        given the mask features resized to the next level (N, mask_dim, h_l * w_l), that
        level's attention mask (N * heads, Q, h_l * w_l), True = blocked.
        """
        dec = self.decoder_norm(output).transpose(0, 1)
        cls = self.class_embed(dec)
        mask_embed = self.mask_embed(dec)  # (N, Q, mask_dim)
        masks = None
        if full:
            n, c, h, w = mask_features.shape
            masks = torch.bmm(mask_embed, mask_features.view(n, c, h * w)).view(n, -1, h, w)
        attn_mask = None
        if small_features is not None:
            small = torch.bmm(mask_embed, small_features)
            # sigmoid(x) < 0.5, as upstream (not x < 0: sigmoid rounds tiny |x| to 0.5)
            blocked = small.sigmoid() < 0.5
            attn_mask = blocked.unsqueeze(1).repeat(1, self.num_heads, 1, 1).flatten(0, 1)
        return cls, masks, attn_mask
