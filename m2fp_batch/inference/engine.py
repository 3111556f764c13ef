"""preprocess -> network -> postprocess for batches of decoded images (no Ray here)."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch

from m2fp_batch.inference import compiled, postprocess, preprocess
from m2fp_batch.inference.loading import ModelInfo, load_model
from m2fp_batch.inference.types import ParseResult
from m2fp_batch.model import M2FP, M2FPConfig
from m2fp_batch.model.layers import fold_batchnorm_
from m2fp_batch.settings import DEFAULT_MODEL_ID, EngineSettings

log = logging.getLogger(__name__)


class M2FPParser:
    """Runs M2FP on RGB images and returns one :class:`ParseResult` per image.

    Images whose padded sizes agree share a forward pass (up to ``max_batch``); images of
    other sizes run on their own, because padding an image to a larger canvas changes the
    deformable attention's sampling grid and so its result.

    Args:
        model: the network with weights loaded.
        config: its configuration (classes, thresholds).
        info: provenance of the weights.
        max_batch: images per forward pass.
        threads: torch intra-op threads (None: leave torch's setting).
        short_edge, max_size: the official resize (640, 1333).
        fast_backbone: fold BatchNorm into the convolutions and use channels-last memory.
            Parity holds with it (float rounding differs by ~1e-5 relative), but it costs
            ~380 MB more RSS (24-MP photo: 2.4 GB, over the 2 GB actor budget) and its speed
            gain was not measurable on the shared benchmark machine: off by default.
        torch_compile: ``torch.compile`` (inductor, CPU) the backbone and pixel decoder; cached
            in ``compile_cache_dir`` (default ``$M2FP_COMPILE_CACHE`` or
            ``~/.cache/m2fp-batch/inductor``); falls back to eager when it cannot compile.
    """

    def __init__(
        self,
        model: M2FP,
        config: M2FPConfig,
        info: ModelInfo | None = None,
        *,
        max_batch: int = 1,
        threads: int | None = None,
        short_edge: int = preprocess.SHORT_EDGE,
        max_size: int = preprocess.MAX_SIZE,
        fast_backbone: bool = False,
        torch_compile: bool = False,
        compile_cache_dir: str | None = None,
    ) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        self.model = model.eval()
        self.config = config
        self.info = info
        self.max_batch = max(1, int(max_batch))
        self.short_edge = short_edge
        self.max_size = max_size
        self.class_names = tuple(config.classes)
        self.channels_last = fast_backbone
        if fast_backbone:
            fold_batchnorm_(self.model.backbone, torch.channels_last)
            self.model.backbone.to(memory_format=torch.channels_last)  # the convolutions without a norm
        self.compiled = torch_compile and all(
            compiled.compile_stage(stage, name, compile_cache_dir)
            for name, stage in (
                ("backbone", self.model.backbone),
                ("pixel decoder", self.model.sem_seg_head.pixel_decoder),
            )
        )

    @classmethod
    def from_pretrained(
        cls,
        model: str = DEFAULT_MODEL_ID,
        *,
        revision: str | None = None,
        cache_dir: str | None = None,
        trust_checkpoint: bool = False,
        **kwargs,
    ) -> M2FPParser:
        """Load a local model dir or a ModelScope id (see :func:`loading.load_model`)."""
        net, cfg, info = load_model(model, revision=revision, cache_dir=cache_dir, trust_checkpoint=trust_checkpoint)
        return cls(net, cfg, info, **kwargs)

    @classmethod
    def from_settings(
        cls, settings: EngineSettings, *, threads: int | None = None, max_batch: int = 1, **kwargs
    ) -> M2FPParser:
        """The engine ``settings`` describe (model, revision, trust, resize); ``threads`` overrides
        ``settings.threads``. Extra keyword arguments go to the constructor (``fast_backbone``, ...)."""
        return cls.from_pretrained(
            settings.model,
            revision=settings.revision,
            trust_checkpoint=settings.trust_checkpoint,
            threads=threads if threads is not None else settings.threads,
            max_batch=max_batch,
            short_edge=settings.short_edge,
            max_size=settings.max_size,
            **kwargs,
        )

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor, keep_aux: bool = False) -> dict:
        """The network alone on a normalised padded batch (N, 3, Hp, Wp)."""
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return self.model(batch, keep_aux=keep_aux)

    def parse_one(self, image: np.ndarray, **kwargs) -> ParseResult:
        return self.parse([image], **kwargs)[0]

    @torch.inference_mode()
    def parse(
        self,
        images: Sequence[np.ndarray],
        *,
        keep_semantic_score: bool = True,
        keep_pred_masks: bool = False,
    ) -> list[ParseResult]:
        """Parse (H, W, 3) uint8 RGB images; results in input order."""
        results: list[ParseResult | None] = [None] * len(images)
        prepared = []
        for i, img in enumerate(images):
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f"image {i}: expected (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
            t0 = time.perf_counter()
            size = preprocess.target_size(img.shape[0], img.shape[1], self.short_edge, self.max_size)
            resized = preprocess.resize(img, size)
            pad = preprocess.padded_size(size, self.model.size_divisibility)
            prepared.append((i, resized, pad, time.perf_counter() - t0))
        groups: dict[tuple[int, int], list] = defaultdict(list)
        for item in prepared:
            groups[item[2]].append(item)
        for pad, items in groups.items():
            for start in range(0, len(items), self.max_batch):
                chunk = items[start : start + self.max_batch]
                t0 = time.perf_counter()
                batch = preprocess.to_batch(
                    [c[1] for c in chunk], self.model.pixel_mean, self.model.pixel_std, self.model.size_divisibility
                )
                t1 = time.perf_counter()
                out = self.forward(batch)
                t2 = time.perf_counter()
                fwd = (t2 - t1) / len(chunk)
                for j, (i, resized, _, t_resize) in enumerate(chunk):
                    t3 = time.perf_counter()
                    res = self._postprocess(
                        out["pred_logits"][j],
                        out["pred_masks"][j],
                        images[i].shape[:2],
                        resized.shape[:2],
                        pad,
                        keep_semantic_score,
                        keep_pred_masks,
                    )
                    res.timings.update(
                        preprocess=t_resize + (t1 - t0) / len(chunk),
                        forward=fwd,
                        postprocess=time.perf_counter() - t3,
                        batch_size=len(chunk),
                    )
                    results[i] = res
        return results  # type: ignore[return-value]

    def _postprocess(
        self,
        pred_logits: torch.Tensor,
        pred_masks: torch.Tensor,
        image_size: tuple[int, int],
        input_size: tuple[int, int],
        pad: tuple[int, int],
        keep_semantic_score: bool,
        keep_pred_masks: bool,
    ) -> ParseResult:
        image_size = (int(image_size[0]), int(image_size[1]))
        semantic, sem_score, parts, humans = postprocess.parse_instances(
            pred_logits,
            pred_masks,
            input_size,
            image_size,
            self.config.num_parsing,
            self.config.parsing_ins_score_thr,
            keep_semantic_score=keep_semantic_score,
        )
        return ParseResult(
            image_size=image_size,
            input_size=(int(input_size[0]), int(input_size[1])),
            padded_size=pad,
            class_names=self.class_names,
            semantic=semantic,
            semantic_score=sem_score,
            parts=parts,
            humans=humans,
            persons=postprocess.persons_from(humans, semantic),
            pred_logits=pred_logits.float().numpy().copy(),
            pred_masks=pred_masks.float().numpy().copy() if keep_pred_masks else None,
            timings={},
        )
