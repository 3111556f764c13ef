"""Checkpoint key handling: one visible pure function, plus strict shape checks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from m2fp_batch.errors import UserError

# Buffers the official checkpoint carries that carry no information at inference.
IGNORED_SUFFIXES = ("num_batches_tracked",)


def remap_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map checkpoint keys to this port's keys.

    The port keeps the official names, so the map is the identity except for wrappers
    that training tools add: a ``module.`` prefix (DataParallel) is stripped.
    """
    out = {}
    for k, v in state_dict.items():
        out[k[len("module.") :] if k.startswith("module.") else k] = v
    return out


class CheckpointMismatchError(UserError, ValueError):
    """The checkpoint lacks weights the network needs, or has them in the wrong shape."""


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_weights` found: keys the network does not use."""

    unexpected: tuple[str, ...]


def load_weights(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], assign: bool = False) -> LoadReport:
    """Load ``state_dict`` into ``model``, refusing to run with uninitialised weights.

    With ``assign`` the checkpoint tensors become the parameters (no copy: a model built on
    the meta device then takes the memory-mapped checkpoint as its weights).

    Raises:
        CheckpointMismatchError: listing every missing key and every shape or dtype mismatch (a
            float16 checkpoint is refused at load, never cast silently: convert it to float32).
    """
    sd = remap_state_dict(state_dict)
    target = model.state_dict()
    missing = sorted(k for k in target if k not in sd and not k.endswith(IGNORED_SUFFIXES))
    wrong = sorted(
        f"{k}: checkpoint {tuple(sd[k].shape)} vs network {tuple(target[k].shape)}"
        for k in target
        if k in sd and tuple(sd[k].shape) != tuple(target[k].shape)
    )
    wrong += sorted(
        f"{k}: checkpoint {sd[k].dtype} vs network {target[k].dtype}"
        for k in target
        if k in sd and tuple(sd[k].shape) == tuple(target[k].shape) and sd[k].dtype != target[k].dtype
    )
    if missing or wrong:
        lines = []
        if missing:
            lines.append(
                f"{len(missing)} missing key(s): " + ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
            )
        if wrong:
            lines.append(
                f"{len(wrong)} shape or dtype mismatch(es): "
                + "; ".join(wrong[:20])
                + (" ..." if len(wrong) > 20 else "")
            )
        raise CheckpointMismatchError(
            "checkpoint does not fit the network built from configuration.json: " + " | ".join(lines)
        )
    unexpected = tuple(sorted(k for k in sd if k not in target and not k.endswith(IGNORED_SUFFIXES)))
    model.load_state_dict({k: v for k, v in sd.items() if k in target}, strict=False, assign=assign)
    return LoadReport(unexpected=unexpected)
