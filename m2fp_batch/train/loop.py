"""The training loop one Ray Train worker runs (and a plain process can run alone).

Each step draws the global batch from the sampler, takes this worker's share (every
``world``-th image), computes the loss with global normalisers, sums the gradients over
workers (all-reduce) and steps AdamW. Rank 0 logs progress and writes the checkpoint."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import distributed as dist

from m2fp_batch.model import M2FP
from m2fp_batch.train.augment import flip_permutation
from m2fp_batch.train.batch import prepare_batch
from m2fp_batch.train.criterion import Normalisers, set_loss
from m2fp_batch.train.model_io import atomic_save, freeze_batchnorm_, load_trainable
from m2fp_batch.train.sampler import SkinBalancedSampler
from m2fp_batch.train.settings import TrainSettings

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoints/last.pt"


@dataclass
class LoopState:
    model: M2FP
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    step: int = 0
    history: list[dict] = field(default_factory=list)


def _sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def make_state(settings: TrainSettings, model: M2FP) -> LoopState:
    """AdamW (backbone at ``lr x backbone_lr_multiplier``, fused) with a poly schedule."""
    model.train()
    freeze_batchnorm_(model)
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    head = [p for p in model.sem_seg_head.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        [{"params": backbone, "lr": settings.lr * settings.backbone_lr_multiplier}, {"params": head}],
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        fused=True,  # one vectorised kernel over all parameters (docs/performance.md, "Fine-tuning")
    )
    steps, power = settings.steps, settings.poly_power
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / max(1, steps)) ** power)
    return LoopState(model, opt, sched)


def checkpoint_path(settings: TrainSettings) -> Path:
    return Path(settings.out) / CHECKPOINT


def save_checkpoint(state: LoopState, settings: TrainSettings, parent_sha: str) -> None:
    atomic_save(
        {
            "model": state.model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(),
            "step": state.step,
            "history": state.history,
            "parent_sha256": parent_sha,
        },
        checkpoint_path(settings),
    )


def restore_checkpoint(state: LoopState, path: Path) -> None:
    ckpt = torch.load(path, map_location=next(state.model.parameters()).device, weights_only=True)
    state.model.load_state_dict(ckpt["model"])
    state.optimizer.load_state_dict(ckpt["optimizer"])
    state.scheduler.load_state_dict(ckpt["scheduler"])
    state.step = int(ckpt["step"])
    state.history = list(ckpt["history"])


def train_step(state: LoopState, settings: TrainSettings, batch, batch_size: int) -> dict:
    """One optimisation step on this worker's share; returns the global loss terms."""
    local_masks = float(sum(len(t) for t in batch.targets))
    device = batch.images.device
    num_masks = float(_sum(torch.tensor([local_masks], dtype=torch.float64, device=device))[0])
    norm = Normalisers(max(num_masks, 1.0), batch_size)
    state.optimizer.zero_grad(set_to_none=True)  # backward then writes the gradients, no zero-fill and add
    if len(batch.targets):
        outputs = state.model(batch.images, keep_aux=settings.loss.deep_supervision)
        loss, terms = set_loss(outputs, batch.targets, settings.loss, norm, batch.generators)
        loss.backward()
    else:  # more workers than images this step: contribute zero gradients
        loss, terms = None, {"loss_ce": 0.0, "loss_mask": 0.0, "loss_dice": 0.0}
    params = [p for p in state.model.parameters() if p.requires_grad]
    _sum_gradients(params)
    if settings.clip_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, settings.clip_grad_norm)
    state.optimizer.step()
    state.scheduler.step()
    values = _sum(
        torch.tensor(
            [float(loss.detach()) if loss is not None else 0.0, *terms.values()], dtype=torch.float64, device=device
        )
    )
    return {"loss": float(values[0]), **{k: float(v) for k, v in zip(terms, values[1:])}}


def _sum_gradients(params: Sequence[torch.Tensor]) -> None:
    """Every parameter gets a gradient (zeros where the loss did not reach it, so AdamW treats
    every parameter alike); with several workers they are summed in one flat all-reduce."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return
    flat = _sum(torch.cat([p.grad.reshape(-1) for p in params]))
    offset = 0
    for p in params:
        p.grad = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()


def run_loop(
    settings: TrainSettings,
    dataset: Sequence,
    groups: Sequence[str],
    rank: int = 0,
    world: int = 1,
    report: Callable[[dict], None] | None = None,
    resume: bool = False,
    device: torch.device | str = "cpu",
) -> LoopState:
    """Train from the current state to ``settings.steps``; rank 0 checkpoints every
    ``checkpoint_every`` steps and at the end. ``report`` gets every step's losses (a cheap
    local call: the Ray Train worker forwards only some of them, see :mod:`.run`); each
    history entry carries the step's end time (``time``, Unix seconds), so speed can be
    measured from ``training.json`` without start-up."""
    torch.manual_seed(settings.seed)
    loaded = load_trainable(settings.init_model)
    model, cfg, parent_sha = loaded.net, loaded.config, loaded.checkpoint_sha256
    model.to(device)
    state = make_state(settings, model)
    if resume and checkpoint_path(settings).is_file():
        restore_checkpoint(state, checkpoint_path(settings))
        if rank == 0:
            log.info("resumed from %s at step %d", checkpoint_path(settings), state.step)
    sampler = SkinBalancedSampler(groups, settings.seed, settings.skin.balanced)
    flip_perm = flip_permutation(cfg.classes)
    t0, first = time.monotonic(), state.step
    while state.step < settings.steps:
        positions = list(range(rank, settings.batch_size, world))
        indices = sampler.draw(settings.batch_size, state.step)
        samples = [dataset[indices[p]] for p in positions]
        batch = prepare_batch(
            samples,
            positions,
            state.step,
            settings.seed,
            settings.augment,
            settings.skin,
            flip_perm,
            cfg.num_parsing,
            model.pixel_mean.cpu(),
            model.pixel_std.cpu(),
        ).to(device)
        losses = train_step(state, settings, batch, settings.batch_size)
        state.step += 1
        state.history.append({"step": state.step, "time": round(time.time(), 3), **losses})
        if rank == 0:
            _progress(state, settings, t0, first)
            if state.step % settings.checkpoint_every == 0 or state.step == settings.steps:
                save_checkpoint(state, settings, parent_sha)
        if report is not None:
            report({"step": state.step, **losses})
    return state


def _progress(state: LoopState, settings: TrainSettings, t0: float, first: int) -> None:
    if state.step % settings.log_every and state.step != settings.steps:
        return
    done = state.step - first
    per_step = (time.monotonic() - t0) / max(1, done)
    eta = per_step * (settings.steps - state.step)
    h = state.history[-1]
    log.info(
        "step %d/%d loss %.4f (ce %.4f mask %.4f dice %.4f) %.2f s/step ETA %s",
        state.step,
        settings.steps,
        h["loss"],
        h["loss_ce"],
        h["loss_mask"],
        h["loss_dice"],
        per_step,
        time.strftime("%H:%M:%S", time.gmtime(eta)),
    )
