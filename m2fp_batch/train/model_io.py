"""Trainable model in and model dir out (the official layout: configuration.json +
pytorch_model.pt = {'model': state_dict})."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from m2fp_batch.inference.loading import CONFIG_NAME, find_checkpoint, read_checkpoint, read_config, sha256_file
from m2fp_batch.model import M2FP, M2FPConfig, build_m2fp
from m2fp_batch.model.checkpoint import load_weights

WEIGHTS_NAME = "pytorch_model.pt"


def freeze_batchnorm_(model: nn.Module) -> int:
    """Freeze every BatchNorm: running statistics (eval mode) and affine parameters.
    Call after ``model.train()``. Returns the number of frozen norms."""
    count = 0
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
            count += 1
    return count


@dataclass(frozen=True)
class TrainableModel:
    """What :func:`load_trainable` returns: the network, its configuration, the checkpoint's sha256."""

    net: M2FP
    config: M2FPConfig
    checkpoint_sha256: str


def load_trainable(model_dir: str | os.PathLike) -> TrainableModel:
    """A model dir's network with its own (writable, float32) copy of the weights.

    Missing or mis-shaped keys raise."""
    model_dir = Path(model_dir)
    cfg, _ = read_config(model_dir)
    ckpt = find_checkpoint(model_dir)
    net = build_m2fp(cfg)
    load_weights(net, {k: v.float() if v.is_floating_point() else v for k, v in read_checkpoint(ckpt).items()})
    return TrainableModel(net, cfg, sha256_file(ckpt))


def write_model_dir(out: Path, parent_dir: Path, state_dict: dict[str, torch.Tensor]) -> Path:
    """Write configuration.json (the parent's) and pytorch_model.pt atomically into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((Path(parent_dir) / CONFIG_NAME).read_text())
    tmp = out / (CONFIG_NAME + ".tmp")
    tmp.write_text(json.dumps(cfg, indent=2))
    os.replace(tmp, out / CONFIG_NAME)
    tmp = out / (WEIGHTS_NAME + ".tmp")
    torch.save({"model": {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}}, tmp)
    os.replace(tmp, out / WEIGHTS_NAME)
    return out


def atomic_save(obj: object, path: Path) -> None:
    """torch.save to a temporary name, then rename (a kill never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
