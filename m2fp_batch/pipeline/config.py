"""The job's settings: one flat object, loaded from YAML, overridden on the command line,
validated before Ray starts, saved next to the output (secrets redacted)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from m2fp_batch.decode import DEFAULT_MAX_PIXELS, MAX_SIZE, SHORT_EDGE
from m2fp_batch.errors import UserError
from m2fp_batch.inference import DEFAULT_MODEL_ID
from m2fp_batch.storage import DEFAULT_MAX_BYTES

SECRET_KEYS = ("s3_access_key", "s3_secret_key", "s3_session_token")
# Settings that change what a row contains: resuming into an output written with other values
# would mix two kinds of rows, so the job refuses (use --overwrite or another output dir).
RESULT_KEYS = (
    "model",
    "model_revision",
    "max_pixels",
    "max_bytes",
    "min_side",
    "short_edge",
    "max_size",
    "adaptive_brightness",
    "shard_size",
)


class ConfigError(UserError, ValueError):
    """A setting is missing or wrong; the message says which and what to do."""

    prefix = "bad configuration: "


@dataclass
class JobConfig:
    """Every setting of ``m2fp-batch run`` (see ``configs/default.yaml`` for the documented file)."""

    input: str | None = None
    output: str | None = None
    model: str = DEFAULT_MODEL_ID
    model_revision: str | None = None
    trust_checkpoint: bool = False  # allow a checkpoint that needs full unpickling (runs its code)
    overwrite: bool = False
    # manifest (Parquet or CSV)
    uri_column: str = "uri"
    image_id_column: str = "image_id"
    # decoding guards
    max_pixels: int = DEFAULT_MAX_PIXELS  # PIL's default decompression-bomb limit
    max_bytes: int = DEFAULT_MAX_BYTES  # per input file, checked before decoding (reads stop at +1 byte)
    min_side: int = 8
    # inference
    batch_size: int = 4  # images per actor call
    forward_batch: int = 1  # images per forward pass (same padded size); 1 is fastest on CPU
    short_edge: int = SHORT_EDGE
    max_size: int = MAX_SIZE
    adaptive_brightness: bool = False  # brighten dark photos (mean V < 80) for the model only
    # output
    shard_size: int = 256
    compression: str = "zstd"
    # Ray
    address: str | None = None
    num_cpus: int | None = None  # a local Ray only
    cpus_per_actor: float = 1.0  # one single-thread actor per CPU: faster than fewer, wider ones (docs/job.md)
    min_actors: int = 1
    max_actors: int | None = None  # None: cluster CPUs // cpus_per_actor
    read_cpus: float = 0.0
    read_concurrency: int = 4
    max_worker_crashes: int = 2
    progress_interval_s: float = 10.0
    # S3 (else the standard AWS_* variables)
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_session_token: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ building
    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "extra"]

    @classmethod
    def from_sources(cls, config_file: str | None = None, overrides: dict[str, Any] | None = None) -> JobConfig:
        """YAML file (optional), then overrides (None values ignored); validated."""
        values: dict[str, Any] = {}
        if config_file:
            values.update(load_yaml(config_file))
        for k, v in (overrides or {}).items():
            if v is not None:
                values[k] = v
        unknown = sorted(set(values) - set(cls.keys()))
        if unknown:
            raise ConfigError(f"unknown setting(s) {unknown}; valid settings: {', '.join(cls.keys())}")
        cfg = cls()
        for k, v in values.items():
            setattr(cfg, k, _coerce(k, v))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first wrong setting."""
        if not self.input:
            raise ConfigError(
                "no input: pass --input DIR|MANIFEST (a directory of images, or a .parquet/.csv manifest)"
            )
        if not self.output:
            raise ConfigError("no output: pass --output DIR (where the Parquet shards go)")
        if not self.model:
            raise ConfigError("no model: pass --model DIR-or-ModelScope-id")
        positive = (
            "max_pixels",
            "max_bytes",
            "batch_size",
            "forward_batch",
            "short_edge",
            "max_size",
            "shard_size",
            "read_concurrency",
        )
        for k in positive:
            if getattr(self, k) < 1:
                raise ConfigError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.min_side < 1:
            raise ConfigError(f"min_side must be >= 1, got {self.min_side}")
        if self.cpus_per_actor <= 0:
            raise ConfigError(f"cpus_per_actor must be > 0, got {self.cpus_per_actor}")
        if self.read_cpus < 0:
            raise ConfigError(f"read_cpus must be >= 0, got {self.read_cpus}")
        if self.min_actors < 1:
            raise ConfigError(f"min_actors must be >= 1, got {self.min_actors}")
        if self.max_actors is not None and self.max_actors < self.min_actors:
            raise ConfigError(f"max_actors ({self.max_actors}) must be >= min_actors ({self.min_actors})")
        if self.max_worker_crashes < 1:
            raise ConfigError(f"max_worker_crashes must be >= 1, got {self.max_worker_crashes}")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ConfigError(f"num_cpus must be >= 1, got {self.num_cpus}")
        if self.progress_interval_s <= 0:
            raise ConfigError(f"progress_interval_s must be > 0, got {self.progress_interval_s}")
        if self.compression not in ("zstd", "snappy", "gzip", "lz4", "brotli", "none"):
            raise ConfigError(
                f"compression must be one of zstd, snappy, gzip, lz4, brotli, none; got {self.compression!r}"
            )
        if self.uri_column == self.image_id_column:
            raise ConfigError("uri_column and image_id_column must differ")

    # ------------------------------------------------------------------ output
    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("extra", None)
        if redact:
            for k in SECRET_KEYS:
                if d.get(k):
                    d[k] = "***"
        return d

    def result_dict(self) -> dict[str, Any]:
        """The settings that change row contents (compared on resume)."""
        return {k: getattr(self, k) for k in RESULT_KEYS}

    def config_hash(self) -> str:
        """sha256 (16 hex digits) of :meth:`result_dict` (the ``config_hash`` column)."""
        blob = json.dumps(self.result_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def ray_address(self) -> str | None:
        """``address`` if set, else ``RAY_ADDRESS``, else None (start a local Ray)."""
        return self.address or os.environ.get("RAY_ADDRESS") or None


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must be a mapping of setting: value")
    return data


_TYPES = {f.name: f.type for f in fields(JobConfig)}


def _coerce(key: str, value: Any) -> Any:
    """Check and convert one value to its setting's type (YAML or ``--set`` strings)."""
    t = str(_TYPES[key])
    optional = "None" in t
    if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "") and optional):
        if not optional:
            raise ConfigError(f"{key} cannot be null")
        return None
    try:
        if t.startswith("bool"):
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes"):
                return True
            if str(value).lower() in ("false", "0", "no"):
                return False
            raise ValueError(value)
        if t.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if t.startswith("float"):
            if isinstance(value, bool) or not math.isfinite(float(value)):
                raise ValueError(value)
            return float(value)
        if t.startswith("str"):
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError(value)
            return str(value)
    except (TypeError, ValueError, OverflowError) as e:
        raise ConfigError(f"{key}: expected {t} (finite), got {value!r}") from e
    return value


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """``["key=value", ...]`` from ``--set`` -> dict (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v) if v.strip() else None
    return out
