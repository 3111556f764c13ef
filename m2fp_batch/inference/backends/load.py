"""Open a backend for a model: a model dir (torch, or a cached export) or an export dir.

Which class runs a backend and which export format it reads come from its registry entry
(:mod:`m2fp_batch.backend_registry`); the class's module is imported only here, when used.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

from m2fp_batch.backend_registry import BackendEntry, EngineError, backend_entry
from m2fp_batch.inference.backends.base import Backend
from m2fp_batch.inference.backends.export import cached_export
from m2fp_batch.inference.backends.graph import ExportError, ExportManifest, is_export_dir, read_manifest
from m2fp_batch.inference.loading import LoadedModel, ModelInfo, describe_model, load_model, read_config
from m2fp_batch.model import M2FP, M2FPConfig

log = logging.getLogger(__name__)

__all__ = ["LoadedEngine", "backend_class", "open_engine"]


@dataclass(frozen=True)
class LoadedEngine:
    """A loaded network forward with its configuration and provenance (``net``: torch only)."""

    backend: Backend
    config: M2FPConfig
    info: ModelInfo
    net: M2FP | None


def backend_class(entry: BackendEntry) -> type:
    """The class that runs ``entry`` (its ``loader``, imported now)."""
    module, name = entry.loader.split(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), name)


def _exported_backend(name: str, export_dir: Path, manifest: ExportManifest, threads: int | None) -> Backend:
    entry = backend_entry(name)
    if entry.cache_format is None:
        raise EngineError(
            f"{export_dir} is an exported graph ({manifest.format}); the {name} engine needs the model dir with its "
            "checkpoint (pass --engine onnxruntime or openvino, or --model the source model dir)"
        )
    return backend_class(entry)(export_dir, manifest, threads)


def _from_export_dir(path: Path, name: str, threads: int | None) -> LoadedEngine:
    manifest = read_manifest(path)
    config, config_sha = read_config(path)
    if config_sha != manifest.config_sha256:
        raise ExportError(f"{path}: its configuration.json is not the one it was exported with (sha256 differs)")
    info = ModelInfo(
        model=str(path),
        model_id=None,
        revision=None,
        model_dir=str(path),
        checkpoint_sha256=manifest.checkpoint_sha256,
        config_sha256=manifest.config_sha256,
        unexpected_keys=(),
    )
    return LoadedEngine(_exported_backend(name, path, manifest, threads), config, info, None)


def open_engine(
    model: str | os.PathLike,
    engine: str,
    *,
    revision: str | None = None,
    cache_dir: str | None = None,
    trust_checkpoint: bool = False,
    threads: int | None = None,
    engine_cache: Path | None = None,
) -> LoadedEngine:
    """Load the backend ``engine`` names (already resolved from auto) for ``model``.

    ``model`` is a model dir / ModelScope id, or an export dir (``export.json``). For a model
    dir, a backend with a ``cache_format`` reads the export cached under the checkpoint's sha256
    (``engine_cache``, default ``$M2FP_ENGINE_CACHE`` or ``~/.cache/m2fp-batch/engines``) and
    exports it on the first use.
    """
    entry = backend_entry(engine)
    if is_export_dir(model):
        return _from_export_dir(Path(model), entry.name, threads)

    def load() -> LoadedModel:
        return load_model(model, revision=revision, cache_dir=cache_dir, trust_checkpoint=trust_checkpoint)

    if entry.cache_format is None:
        loaded = load()
        return LoadedEngine(backend_class(entry)(loaded.net), loaded.config, loaded.info, loaded.net)
    # no torch network for an exported backend: the cache is keyed by the checkpoint's sha256 and
    # only a miss loads the weights (the actor's memory and start-up)
    config, info, _ = describe_model(model, revision, cache_dir)
    export_dir = cached_export(load, info, entry.cache_format, engine_cache)
    manifest = read_manifest(export_dir)
    info = replace(info, unexpected_keys=tuple(manifest.unexpected_keys))
    return LoadedEngine(_exported_backend(entry.name, export_dir, manifest, threads), config, info, None)
