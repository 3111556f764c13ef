"""Where the torch engine runs and in which arithmetic: ``EngineSettings.device`` / ``precision``.

fp32 turns TF32 off (it moved 3 % of training losses on an H200): fp32 on CUDA is the parity
setting. bf16 and fp16 are ``torch.autocast`` around the network's forward only; the
postprocess always runs in float32. A CUDA out-of-memory error on one photo is an ordinary
engine error to the labelling core (``torch.OutOfMemoryError`` is a ``RuntimeError``): it frees
the device's cached blocks (:func:`after_engine_error`) and retries the photo alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from m2fp_batch.errors import UserError

__all__ = ["AUTOCAST_DTYPES", "DeviceError", "after_engine_error", "autocast", "resolve_device", "use_fp32"]

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class DeviceError(UserError, ValueError):
    """The asked-for device is not on this machine; the message says what torch sees."""


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` -> a device this process can use.

    Raises:
        DeviceError: CUDA asked for but absent, or ``cuda:N`` beyond the GPUs torch sees.
    """
    if device == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"--device {device}: this torch ({torch.__version__}) sees no CUDA GPU; use --device cpu "
            "(or auto), or install a CUDA build of torch on a machine with a GPU"
        )
    index = int(device.split(":", 1)[1]) if ":" in device else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise DeviceError(f"--device {device}: torch sees {torch.cuda.device_count()} CUDA GPU(s), numbered from 0")
    return torch.device("cuda", index)


def use_fp32() -> None:
    """Full float32 matmuls and convolutions on CUDA (TF32 off), the parity setting."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """``torch.autocast`` to ``precision`` on ``device`` (fp32: nothing changes)."""
    if precision == "fp32":
        yield
        return
    with torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision]):
        yield


def after_engine_error(error: BaseException, device: torch.device) -> None:
    """After an out-of-memory error on ``device`` (``torch.OutOfMemoryError``, which
    ``torch.cuda.OutOfMemoryError`` is), give the CUDA caching allocator's free blocks back so
    that the photo's retry alone, and the next photos, start from an empty cache."""
    if isinstance(error, torch.OutOfMemoryError) and device.type == "cuda":
        torch.cuda.empty_cache()
