"""Find a model (local dir or ModelScope id), load its checkpoint safely, record provenance."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import socket
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from m2fp_batch.errors import UserError
from m2fp_batch.model import M2FP, M2FPConfig, build_m2fp
from m2fp_batch.model.checkpoint import load_weights
from m2fp_batch.settings import DEFAULT_MODEL_ID

log = logging.getLogger(__name__)

CHECKPOINT_NAMES = ("pytorch_model.pt", "pytorch_model.bin")
CONFIG_NAME = "configuration.json"
HUB_PROBE_TIMEOUT_S = 5.0


class ModelLoadError(UserError, RuntimeError):
    """The model cannot be found, downloaded or loaded; the message says what to do."""


class UntrustedCheckpointError(ModelLoadError):
    """The checkpoint needs arbitrary unpickling (code execution) to load."""


@dataclass(frozen=True)
class ModelInfo:
    """Where the weights came from: written next to every output."""

    model: str  # what the user passed
    model_id: str | None  # ModelScope id, when loaded from the hub
    revision: str | None
    model_dir: str
    checkpoint_sha256: str
    config_sha256: str
    unexpected_keys: tuple[str, ...]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LoadedModel:
    """What :func:`load_model` returns: the network (eval mode), its configuration, its provenance."""

    net: M2FP
    config: M2FPConfig
    info: ModelInfo


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def looks_like_model_id(model: str) -> bool:
    """``owner/name`` that is not an existing path."""
    return not Path(model).exists() and model.count("/") == 1 and not model.startswith((".", "/", "~"))


def _hub_unreachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Why the ModelScope hub cannot be reached (a TCP connect within ``timeout``), or None."""
    from urllib.parse import urlparse

    from modelscope.hub.utils.utils import get_endpoint

    url = urlparse(get_endpoint())
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    result: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(None)
        except OSError as e:
            result.append(f"{host}:{port}: {e.strerror or e}")

    t = threading.Thread(target=probe, daemon=True)  # name resolution ignores socket timeouts
    t.start()
    t.join(timeout + 1.0)
    return result[0] if result else f"{host}:{port}: no answer within {timeout:g} s"


def resolve_model_dir(model: str, revision: str | None = None, cache_dir: str | None = None) -> tuple[Path, str | None]:
    """Return (local model dir, ModelScope id or None), downloading an id if needed.

    Raises:
        ModelLoadError: the path does not exist, or the id cannot be downloaded.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return path, None
    if not looks_like_model_id(model):
        raise ModelLoadError(f"model {model!r}: no such directory, and not a ModelScope id (owner/name)")
    cache = cache_dir or os.environ.get("M2FP_CACHE_DIR") or os.environ.get("MODELSCOPE_CACHE")
    try:
        from modelscope.hub.snapshot_download import snapshot_download
    except ImportError as e:  # pragma: no cover - modelscope is a core dependency
        raise ModelLoadError(
            f"model {model!r} is a ModelScope id but the 'modelscope' package is not installed; "
            "install it or pass a local model dir (--model DIR with configuration.json and pytorch_model.pt)"
        ) from e
    try:
        local = snapshot_download(model, revision=revision, cache_dir=cache, local_files_only=True)
        return Path(local), model
    except Exception as first:  # noqa: BLE001 - not cached: fall through to a download
        log.debug("model %s not in the local cache (%s); downloading", model, first)
    unreachable = _hub_unreachable()
    if unreachable:
        raise ModelLoadError(
            f"model {model!r} is not in the ModelScope cache and the hub cannot be reached ({unreachable}); "
            "without network access pass a local model directory (configuration.json + pytorch_model.pt) "
            "with --model DIR"
        )
    try:
        local = snapshot_download(model, revision=revision, cache_dir=cache)
    except Exception as e:  # the hub client raises many types (network, auth, not found)
        raise ModelLoadError(
            f"could not download ModelScope model {model!r} (revision {revision or 'default'}): "
            f"{type(e).__name__}: {str(e)[:300]}. Without network access, download the model "
            "elsewhere and pass its local directory (containing configuration.json and "
            "pytorch_model.pt) with --model DIR."
        ) from e
    return Path(local), model


def read_config(model_dir: Path) -> tuple[M2FPConfig, str]:
    """Parse ``configuration.json``; return the config and the file's sha256."""
    path = model_dir / CONFIG_NAME
    if not path.is_file():
        raise ModelLoadError(f"{model_dir} has no {CONFIG_NAME}: it is not a ModelScope M2FP model dir")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"{path} is not valid JSON: {e}") from e
    except (UnicodeDecodeError, OSError) as e:
        raise ModelLoadError(f"{path} cannot be read as UTF-8 JSON: {e}") from e
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{path} is not an M2FP configuration (a JSON object)")
    try:
        return M2FPConfig.from_dict(raw), sha256_file(path)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ModelLoadError(f"{path} is not an M2FP configuration: {type(e).__name__}: {e}") from e


def read_checkpoint(path: Path, trust_checkpoint: bool = False) -> dict[str, torch.Tensor]:
    """Load a state dict with ``torch.load(weights_only=True)``.

    A checkpoint that needs arbitrary unpickling is refused unless ``trust_checkpoint``.
    Accepts ``{"model": state_dict}`` (ModelScope), ``{"state_dict": ...}`` or a flat dict.
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        if not trust_checkpoint:
            raise UntrustedCheckpointError(
                f"{path} cannot be loaded with weights_only=True: it contains pickled objects other than "
                "tensors, and unpickling them can run arbitrary code; if you trust its source, pass "
                "--trust-checkpoint (m2fp-batch parse and run) or convert it to a plain state dict of tensors"
            ) from e
        log.warning("loading %s with full unpickling (--trust-checkpoint)", path)
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError) as e:
        raise ModelLoadError(
            f"{path} is not a readable PyTorch checkpoint (truncated or corrupt download?): {str(e)[:300]}"
        ) from e
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelLoadError(f"{path} does not hold a state dict of tensors")
    return obj


def find_checkpoint(model_dir: Path) -> Path:
    for name in CHECKPOINT_NAMES:
        if (model_dir / name).is_file():
            return model_dir / name
    raise ModelLoadError(f"model dir {model_dir} has no checkpoint (none of {', '.join(CHECKPOINT_NAMES)})")


def describe_model(
    model: str | os.PathLike = DEFAULT_MODEL_ID, revision: str | None = None, cache_dir: str | None = None
) -> tuple[M2FPConfig, ModelInfo, Path]:
    """The model's configuration, provenance and checkpoint file, without reading the weights
    (``unexpected_keys`` stays empty: only loading the weights finds them). An exported engine
    whose export is cached needs no more than this."""
    model = str(model)
    model_dir, model_id = resolve_model_dir(model, revision, cache_dir)
    cfg, cfg_sha = read_config(model_dir)
    ckpt = find_checkpoint(model_dir)
    info = ModelInfo(
        model=model,
        model_id=model_id,
        revision=revision,
        model_dir=str(model_dir),
        checkpoint_sha256=sha256_file(ckpt),
        config_sha256=cfg_sha,
        unexpected_keys=(),
    )
    return cfg, info, ckpt


def load_model(
    model: str | os.PathLike = DEFAULT_MODEL_ID,
    revision: str | None = None,
    cache_dir: str | None = None,
    trust_checkpoint: bool = False,
) -> LoadedModel:
    """Build the network from the model dir's configuration and load its weights (eval mode).

    Unexpected checkpoint keys are logged as a warning; missing or mis-shaped keys raise.
    """
    cfg, info, ckpt = describe_model(model, revision, cache_dir)
    state = read_checkpoint(ckpt, trust_checkpoint)
    # Built on the meta device, the network takes the memory-mapped checkpoint tensors as its
    # weights: no random initialisation, no second copy, pages shared between processes.
    with torch.device("meta"):
        net = build_m2fp(cfg)
    report = load_weights(net, state, assign=True)
    net.materialize_constants_()
    if report.unexpected:
        log.warning(
            "%d checkpoint key(s) not used by the network: %s", len(report.unexpected), ", ".join(report.unexpected)
        )
    net.eval()
    return LoadedModel(net, cfg, replace(info, unexpected_keys=report.unexpected))
