"""Optional ``torch.compile`` (inductor, CPU) of the backbone and pixel decoder, with a fallback.

The compiled graph is cached on disk (inductor's FX-graph cache under ``cache_dir``), so a
second process with the same model and input size reuses it instead of compiling again.
Anything that goes wrong (no C++ compiler, an inductor error at the first call, an
unsupported op) logs one warning and the stage runs eagerly from then on: compiling is an
optimisation, never a requirement.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

__all__ = ["COMPILE_CACHE_ENV", "compile_stage", "compiler_available", "default_cache_dir"]

COMPILE_CACHE_ENV = "M2FP_COMPILE_CACHE"
# Inductor options: freezing folds the (inference-only) weights into the graph as constants,
# which lets it pre-pack the convolution weights for oneDNN.
INDUCTOR_OPTIONS = {"freezing": True}


def default_cache_dir() -> Path:
    """``$M2FP_COMPILE_CACHE``, else ``~/.cache/m2fp-batch/inductor``."""
    env = os.environ.get(COMPILE_CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "m2fp-batch" / "inductor"


def compiler_available() -> str | None:
    """None when inductor can build CPU kernels here, else the reason it cannot."""
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        return f"no C++ compiler ({cxx!r} not on PATH)"
    try:
        import torch._inductor  # noqa: F401
    except Exception as e:  # noqa: BLE001 - an incomplete torch build
        return f"torch inductor unavailable: {e}"
    return None


class _CompiledForward:
    """``module.forward`` replaced by its compiled version, eager on the first failure."""

    def __init__(self, name: str, eager: Callable, compiled: Callable) -> None:
        self.name = name
        self.eager = eager
        self.compiled: Callable | None = compiled

    def __call__(self, *args, **kwargs):
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - any compiler failure falls back to eager
                log.warning("torch.compile of %s failed (%s: %s); running it eagerly", self.name, type(e).__name__, e)
                self.compiled = None
        return self.eager(*args, **kwargs)


def compile_stage(module: nn.Module, name: str, cache_dir: str | os.PathLike | None = None) -> bool:
    """Compile ``module.forward`` in place (inductor, frozen weights); False if not possible.

    The module keeps its parameters and state-dict names; only its forward changes. Compilation
    happens at the first call (one graph per input shape, then cached in ``cache_dir``).
    """
    reason = compiler_available()
    if reason:
        log.warning("torch.compile of %s skipped: %s", name, reason)
        return False
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        log.warning("torch.compile cache %s is not writable (%s); compiling without a cache", cache, e)
    else:
        if cache_dir is not None or "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache)  # inductor's FX-graph and kernel caches
    eager = module.forward
    try:
        compiled = torch.compile(eager, backend="inductor", dynamic=False, options=INDUCTOR_OPTIONS)
    except Exception as e:  # noqa: BLE001
        log.warning("torch.compile of %s unavailable (%s); running it eagerly", name, e)
        return False
    module.forward = _CompiledForward(name, eager, compiled)  # type: ignore[method-assign]
    return True
