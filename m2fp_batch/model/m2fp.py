"""The whole network: backbone -> pixel decoder -> transformer decoder."""

from __future__ import annotations

import torch
from torch import nn

from m2fp_batch.model.backbone import DeeplabResNet
from m2fp_batch.model.pixel_decoder import MSDeformAttnPixelDecoder
from m2fp_batch.model.transformer_decoder import MultiScaleMaskedTransformerDecoder


class M2FPHead(nn.Module):
    """Pixel decoder plus transformer decoder (checkpoint prefix ``sem_seg_head``)."""

    def __init__(self, pixel_decoder: MSDeformAttnPixelDecoder, predictor: MultiScaleMaskedTransformerDecoder) -> None:
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor

    def forward(self, features: dict[str, torch.Tensor], keep_aux: bool = False) -> dict:
        mask_features, multi_scale = self.pixel_decoder(features)
        return self.predictor(multi_scale, mask_features, keep_aux=keep_aux)


class M2FP(nn.Module):
    """M2FP for multiple-human parsing.

    ``forward`` takes a normalised, zero-padded batch (N, 3, H, W), H and W multiples of
    ``size_divisibility``, and returns ``pred_logits`` (N, Q, K + 1) and ``pred_masks``
    (N, Q, H/4, W/4). Images of one batch must share their padded size: the deformable
    attention normalises its sampling grid by the feature-map size.

    Args:
        backbone: the ResNet.
        sem_seg_head: pixel decoder plus transformer decoder.
        pixel_mean, pixel_std: RGB normalisation on the 0-255 scale.
        size_divisibility: the padded size is a multiple of this.
    """

    def __init__(
        self,
        backbone: DeeplabResNet,
        sem_seg_head: M2FPHead,
        pixel_mean: tuple[float, float, float],
        pixel_std: tuple[float, float, float],
        size_divisibility: int,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self._normalisation = (tuple(pixel_mean), tuple(pixel_std))
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), persistent=False)
        self.size_divisibility = size_divisibility

    def materialize_constants_(self) -> None:
        """Re-create the tensors that no checkpoint holds (after building on the meta device)."""
        mean, std = self._normalisation
        self.pixel_mean = torch.tensor(mean).view(-1, 1, 1)
        self.pixel_std = torch.tensor(std).view(-1, 1, 1)
        for module in self.modules():
            for name, buf in list(module.named_buffers(recurse=False)):
                if buf.is_meta:  # e.g. BatchNorm's num_batches_tracked when a checkpoint omits it
                    module.register_buffer(name, torch.zeros(buf.shape, dtype=buf.dtype))

    @property
    def num_queries(self) -> int:
        return self.sem_seg_head.predictor.num_queries

    @property
    def num_classes(self) -> int:
        return self.sem_seg_head.predictor.num_classes

    def forward(self, images: torch.Tensor, keep_aux: bool = False) -> dict:
        features = self.backbone(images)
        return self.sem_seg_head(features, keep_aux=keep_aux)
