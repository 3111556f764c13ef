"""The backends ``--engine`` names: one registry entry each, read by every place that needs one.

A backend runs the network's forward; preprocess and postprocess are shared by all of them
(:class:`m2fp_batch.inference.M2FPParser`). Each :class:`BackendEntry` says what the backend is
called, where it ranks for ``auto``, which export format it reads from the export cache, how it
loads (a ``module:Class`` under :mod:`m2fp_batch.inference.backends`, imported only when used) and
which package it needs. ``EngineSettings`` validates ``--engine`` against :data:`ENGINES`,
``auto`` resolves through :func:`resolve_engine` and the export cache reads ``cache_format``.

Torch-free and free of the backends' packages: the service front end and the job's driver import
it through :mod:`m2fp_batch.settings` without loading the model.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from m2fp_batch.errors import UserError

__all__ = ["AUTO", "BACKENDS", "ENGINES", "BackendEntry", "EngineError", "backend_entry", "resolve_engine"]

AUTO = "auto"
INSTALL_HINT = "pip install 'm2fp-batch[engines]'"


class EngineError(UserError):
    """A backend cannot be chosen, loaded or used as asked; the message says why and what to do."""


@dataclass(frozen=True)
class BackendEntry:
    """One backend.

    Attributes:
        name: the ``--engine`` value.
        auto_rank: its place in ``auto``'s order (1 first): the measured speed order of
            ``benchmarks/bench_inference.py --engines-only`` (docs/performance.md, "Engines").
        cache_format: the export format it reads (:mod:`m2fp_batch.inference.backends.export`);
            None: it runs the checkpoint itself (torch).
        loader: ``module:Class`` under ``m2fp_batch.inference.backends``, imported when used.
        requires: the package it imports (``auto`` skips it when missing; the hint names it).
    """

    name: str
    auto_rank: int
    cache_format: str | None
    loader: str
    requires: str

    def installed(self) -> bool:
        """Whether ``requires`` can be imported here (checked without importing it)."""
        return importlib.util.find_spec(self.requires) is not None

    def missing_message(self) -> str:
        return f"--engine {self.name} needs the '{self.requires}' package: {INSTALL_HINT}"


BACKENDS: tuple[BackendEntry, ...] = (
    BackendEntry("torch", 1, None, "torch_backend:TorchBackend", "torch"),
    BackendEntry("onnxruntime", 3, "onnx", "onnxruntime_backend:OnnxRuntimeBackend", "onnxruntime"),
    BackendEntry("openvino", 2, "openvino", "openvino_backend:OpenVinoBackend", "openvino"),
)
# every --engine value: the backends, then auto
ENGINES: tuple[str, ...] = (*(b.name for b in BACKENDS), AUTO)


def backend_entry(name: str) -> BackendEntry:
    """The entry of a concrete backend (not ``auto``); an :class:`EngineError` for any other name."""
    for entry in BACKENDS:
        if entry.name == name:
            return entry
    raise EngineError(f"engine {name!r} is not one of {', '.join(b.name for b in BACKENDS)}")


def resolve_engine(engine: str, exported: bool = False) -> str:
    """The backend ``engine`` names; ``auto``: the best-ranked one whose package is installed and,
    for an export dir (``exported``), that reads an export (torch needs the checkpoint)."""
    if engine not in ENGINES:
        raise EngineError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
    if engine != AUTO:
        return engine
    usable = [b for b in BACKENDS if b.installed() and not (exported and b.cache_format is None)]
    if not usable:
        raise EngineError(f"--engine auto finds no installed backend that reads an export dir: {INSTALL_HINT}")
    return min(usable, key=lambda b: b.auto_rank).name
