"""Open an engine for a model: a model dir (torch, or a cached export) or an export dir."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

from m2fp_batch.inference.engines import backends
from m2fp_batch.inference.engines.export import ExportError, ExportManifest, cached_export, is_export_dir, read_manifest
from m2fp_batch.inference.loading import LoadedModel, ModelInfo, describe_model, load_model, read_config
from m2fp_batch.model import M2FP, M2FPConfig

log = logging.getLogger(__name__)

__all__ = ["LoadedEngine", "open_engine"]

# the export format each exported engine reads from the cache
CACHE_FORMAT = {"onnxruntime": "onnx", "openvino": "openvino"}


@dataclass(frozen=True)
class LoadedEngine:
    """A loaded network forward with its configuration and provenance (``net``: torch only)."""

    backend: backends.Backend
    config: M2FPConfig
    info: ModelInfo
    net: M2FP | None


def _exported_backend(name: str, export_dir: Path, manifest: ExportManifest, threads: int | None) -> backends.Backend:
    if name == "onnxruntime":
        return backends.OnnxRuntimeBackend(export_dir, manifest, threads)
    if name == "openvino":
        return backends.OpenVinoBackend(export_dir, manifest, threads)
    raise ExportError(
        f"{export_dir} is an exported graph ({manifest.format}); the torch engine needs the model dir with its "
        "checkpoint (pass --engine onnxruntime or openvino, or --model the source model dir)"
    )


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
    """Load ``engine`` (torch, onnxruntime, openvino; already resolved from auto) for ``model``.

    ``model`` is a model dir / ModelScope id, or an export dir (``export.json``). For a model
    dir, an exported engine reads the export cached under the checkpoint's sha256
    (``engine_cache``, default ``$M2FP_ENGINE_CACHE`` or ``~/.cache/m2fp-batch/engines``) and
    exports it on the first use.
    """
    if is_export_dir(model):
        return _from_export_dir(Path(model), engine, threads)

    def load() -> LoadedModel:
        return load_model(model, revision=revision, cache_dir=cache_dir, trust_checkpoint=trust_checkpoint)

    if engine == "torch":
        loaded = load()
        return LoadedEngine(backends.TorchBackend(loaded.net), loaded.config, loaded.info, loaded.net)
    if engine not in CACHE_FORMAT:
        raise ExportError(f"engine {engine!r} is not one of torch, {', '.join(CACHE_FORMAT)}")
    # no torch network for an exported engine: the cache is keyed by the checkpoint's sha256 and
    # only a miss loads the weights (the actor's memory and start-up)
    config, info, _ = describe_model(model, revision, cache_dir)
    export_dir = cached_export(load, info, CACHE_FORMAT[engine], engine_cache)
    manifest = read_manifest(export_dir)
    info = replace(info, unexpected_keys=tuple(manifest.unexpected_keys))
    return LoadedEngine(_exported_backend(engine, export_dir, manifest, threads), config, info, None)
