"""M2FPParser: preprocess -> backend (the network's forward) -> postprocess for batches of decoded
images (no Ray here)."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from m2fp_batch.backend_registry import EngineError, resolve_engine
from m2fp_batch.inference.backends.base import Backend
from m2fp_batch.inference.backends.graph import is_export_dir
from m2fp_batch.inference.backends.load import open_engine
from m2fp_batch.inference.backends.torch_backend import TorchBackend
from m2fp_batch.inference.compiled import compile_stage
from m2fp_batch.inference.device import autocast, resolve_device, use_fp32
from m2fp_batch.inference.loading import ModelInfo
from m2fp_batch.inference.postprocess import parse_instances, persons_from
from m2fp_batch.inference.preprocess import padded_size, resize, to_batch
from m2fp_batch.inference.types import ParseResult
from m2fp_batch.memory import release_free_memory
from m2fp_batch.model import M2FP, M2FPConfig
from m2fp_batch.model.build import PIXEL_MEAN, PIXEL_STD, SIZE_DIVISIBILITY
from m2fp_batch.model.layers import fold_batchnorm_
from m2fp_batch.resize import MAX_SIZE, SHORT_EDGE, target_size
from m2fp_batch.settings import DEFAULT_MODEL_ID, EngineSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resized:
    """A photo resized for the model on the CPU (:meth:`M2FPParser.resize`): what the device takes.

    ``image_size``: the original (H, W); ``image``: the resized uint8 pixels; ``pad``: its padded
    size (photos of one padded size share a forward); ``seconds``: the resize's time.
    """

    image_size: tuple[int, int]
    image: np.ndarray
    pad: tuple[int, int]
    seconds: float


def resize_for_model(image: np.ndarray, short_edge: int, max_size: int) -> Resized:
    """The CPU part of the preprocess: the official resize of (H, W, 3) uint8 RGB (the job's
    decode stage runs it apart from the device)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    t0 = time.perf_counter()
    size = target_size(image.shape[0], image.shape[1], short_edge, max_size)
    resized = resize(image, size)
    pad = padded_size(size, SIZE_DIVISIBILITY)
    return Resized((int(image.shape[0]), int(image.shape[1])), resized, pad, time.perf_counter() - t0)


class M2FPParser:
    """Runs M2FP on RGB images and returns one :class:`ParseResult` per image.

    Preprocess and postprocess are the same for every engine; only the network's forward
    (``backend``: PyTorch, ONNX Runtime or OpenVINO, see :mod:`.backends`) changes.

    Images whose padded sizes agree share a forward pass (up to ``max_batch``); images of
    other sizes run on their own, because padding an image to a larger canvas changes the
    deformable attention's sampling grid and so its result.

    Args:
        model: the torch network with weights loaded (None when ``backend`` runs an export dir).
        config: its configuration (classes, thresholds).
        info: provenance of the weights.
        backend: the network forward; default the eager torch ``model``.
        max_batch: images per forward pass.
        threads: torch intra-op threads (None: leave torch's setting).
        short_edge, max_size: the official resize (640, 1333).
        fast_backbone: (torch engine) fold BatchNorm into the convolutions and use channels-last
            memory. Parity holds with it (float rounding differs slightly), but it costs memory (a
            24-MP photo goes over the 2 GB actor budget) and its speed gain was not measurable on the
            shared benchmark machine (docs/performance.md, "Numbers behind the code"): off by default.
        torch_compile: (torch engine) ``torch.compile`` (inductor, CPU) the backbone and pixel
            decoder; cached in ``compile_cache_dir`` (default ``$M2FP_COMPILE_CACHE`` or
            ``~/.cache/m2fp-batch/inductor``); falls back to eager when it cannot compile.
        device: (torch engine) where the forward and the tensor part of the postprocess run
            (``EngineSettings.device``); the resize and the returned results stay on the CPU.
        precision: (torch engine) fp32 (TF32 off), bf16 or fp16 (autocast around the forward).
    """

    def __init__(
        self,
        model: M2FP | None,
        config: M2FPConfig,
        info: ModelInfo | None = None,
        *,
        backend: Backend | None = None,
        max_batch: int = 1,
        threads: int | None = None,
        short_edge: int = SHORT_EDGE,
        max_size: int = MAX_SIZE,
        fast_backbone: bool = False,
        torch_compile: bool = False,
        compile_cache_dir: str | None = None,
        device: str = "cpu",
        precision: str = "fp32",
    ) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        self.device = resolve_device(device)
        self.precision = precision
        if self.device.type == "cuda":
            use_fp32()  # autocast alone lowers precision: fp32 is full float32
        self.model = model.eval().to(self.device) if model is not None else None
        self.config = config
        self.info = info
        self.max_batch = max(1, int(max_batch))
        self.short_edge = short_edge
        self.max_size = max_size
        self.class_names = tuple(config.classes)
        self.pixel_mean = torch.tensor(PIXEL_MEAN).view(-1, 1, 1)
        self.pixel_std = torch.tensor(PIXEL_STD).view(-1, 1, 1)
        self.size_divisibility = SIZE_DIVISIBILITY
        self.backend = backend if backend is not None else TorchBackend(self._torch_model())
        self.engine = self.backend.name
        if (self.device.type != "cpu" or precision != "fp32") and not isinstance(self.backend, TorchBackend):
            raise EngineError(f"--device and --precision apply to the torch engine, not {self.engine}")
        self.compiled = False
        self.channels_last = self._torch_levers(fast_backbone, torch_compile, compile_cache_dir)

    def _torch_model(self) -> M2FP:
        if self.model is None:
            raise EngineError("the torch engine needs the network (a model dir with its checkpoint)")
        return self.model

    def _torch_levers(self, fast_backbone: bool, torch_compile: bool, cache_dir: str | None) -> bool:
        """Apply --fast-backbone / --compile (torch engine only); True when channels-last."""
        if not (fast_backbone or torch_compile):
            return False
        if not isinstance(self.backend, TorchBackend):
            raise EngineError(f"--fast-backbone and --compile apply to the torch engine, not {self.engine}")
        net = self.backend.net
        if fast_backbone:
            fold_batchnorm_(net.backbone, torch.channels_last)
            net.backbone.to(memory_format=torch.channels_last)  # the convolutions without a norm
            self.backend.channels_last = True
        self.compiled = torch_compile and all(
            compile_stage(stage, name, cache_dir)
            for name, stage in (("backbone", net.backbone), ("pixel decoder", net.sem_seg_head.pixel_decoder))
        )
        return fast_backbone

    @classmethod
    def from_pretrained(
        cls,
        model: str = DEFAULT_MODEL_ID,
        *,
        revision: str | None = None,
        cache_dir: str | None = None,
        trust_checkpoint: bool = False,
        engine: str = "torch",
        threads: int | None = None,
        **kwargs,
    ) -> M2FPParser:
        """Load a local model dir, a ModelScope id (see :func:`loading.load_model`) or an export
        dir, with ``engine`` (torch, onnxruntime, openvino or auto) running the network."""
        loaded = open_engine(
            model,
            resolve_engine(engine, exported=is_export_dir(model)),
            revision=revision,
            cache_dir=cache_dir,
            trust_checkpoint=trust_checkpoint,
            threads=threads,
        )
        return cls(loaded.net, loaded.config, loaded.info, backend=loaded.backend, threads=threads, **kwargs)

    @classmethod
    def from_settings(
        cls, settings: EngineSettings, *, threads: int | None = None, max_batch: int = 1, **kwargs
    ) -> M2FPParser:
        """The engine ``settings`` describe (model, revision, trust, engine, resize, device, precision);
        ``threads`` overrides ``settings.threads``. Extra keyword arguments go to the constructor
        (``fast_backbone``, ...). The device and the precision are checked before the weights load."""
        settings.check_labelling()
        resolve_device(settings.device)
        return cls.from_pretrained(
            settings.model,
            revision=settings.revision,
            engine=settings.engine,
            trust_checkpoint=settings.trust_checkpoint,
            threads=threads if threads is not None else settings.threads,
            max_batch=max_batch,
            short_edge=settings.short_edge,
            max_size=settings.max_size,
            device=settings.device,
            precision=settings.precision,
            **kwargs,
        )

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> dict:
        """The network alone on a normalised padded batch (N, 3, Hp, Wp) on the engine's device, in
        its precision; on the CPU its freed activations go back to the system before the postprocess
        allocates at the photo's full size."""
        with autocast(self.device, self.precision):
            out = self.backend(batch.to(self.device))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the forward's time is its own, not the postprocess's
        release_free_memory()
        return out

    def parse_one(self, image: np.ndarray, **kwargs) -> ParseResult:
        return self.parse([image], **kwargs)[0]

    def resize(self, image: np.ndarray) -> Resized:
        """:func:`resize_for_model` with this engine's resize."""
        return resize_for_model(image, self.short_edge, self.max_size)

    def parse(
        self,
        images: Sequence[np.ndarray],
        *,
        keep_semantic_score: bool = True,
        keep_pred_masks: bool = False,
    ) -> list[ParseResult]:
        """Parse (H, W, 3) uint8 RGB images; results in input order."""
        prepared = []
        for i, img in enumerate(images):
            try:
                prepared.append(self.resize(img))
            except ValueError as e:
                raise ValueError(f"image {i}: {e}") from e
        return self.parse_resized(prepared, keep_semantic_score=keep_semantic_score, keep_pred_masks=keep_pred_masks)

    @torch.inference_mode()
    def parse_resized(
        self, items: Sequence[Resized], *, keep_semantic_score: bool = True, keep_pred_masks: bool = False
    ) -> list[ParseResult]:
        """The device part: normalise, forward and the tensor postprocess of resized photos, those
        of one padded size ``max_batch`` at a time; results (on the CPU) in input order."""
        results: list[ParseResult | None] = [None] * len(items)
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, item in enumerate(items):
            groups[item.pad].append(i)
        for pad, members in groups.items():
            for start in range(0, len(members), self.max_batch):
                chunk = members[start : start + self.max_batch]
                t0 = time.perf_counter()
                batch = to_batch(
                    [items[i].image for i in chunk], self.pixel_mean, self.pixel_std, self.size_divisibility
                )
                t1 = time.perf_counter()
                out = self.forward(batch)
                t2 = time.perf_counter()
                for j, i in enumerate(chunk):
                    t3 = time.perf_counter()
                    res = self._postprocess(
                        out["pred_logits"][j],
                        out["pred_masks"][j],
                        items[i].image_size,
                        items[i].image.shape[:2],
                        pad,
                        keep_semantic_score,
                        keep_pred_masks,
                    )
                    res.timings.update(
                        preprocess=items[i].seconds + (t1 - t0) / len(chunk),
                        forward=(t2 - t1) / len(chunk),
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
        parsed = parse_instances(
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
            semantic=parsed.semantic,
            semantic_score=parsed.semantic_score,
            parts=parsed.parts,
            humans=parsed.humans,
            persons=persons_from(parsed.humans, parsed.semantic),
            pred_logits=pred_logits.float().cpu().numpy().copy(),
            pred_masks=pred_masks.float().cpu().numpy().copy() if keep_pred_masks else None,
            timings={},
        )
