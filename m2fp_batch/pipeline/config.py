"""The job's settings: the job's own and the embedded :class:`EngineSettings`, loaded from YAML (flat
keys), overridden on the command line, validated before Ray starts, saved next to the output (secrets
redacted)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from m2fp_batch.deprecation import old_names
from m2fp_batch.errors import UserError
from m2fp_batch.settings import EngineSettings, SettingsError, is_gpu_share
from m2fp_batch.video import Sampling
from m2fp_batch.yamlfile import strict_load

__all__ = ["JOB_ONLY_RESUME_KEYS", "JobSettings", "JobSettingsError", "KEY_ALIASES", "load_yaml", "parse_set"]

COMPRESSIONS = ("zstd", "snappy", "gzip", "lz4", "brotli", "none")
MAX_VIDEO_FPS = 240.0  # above any camera's rate: a higher video_fps is a typo
SECRET_KEYS = ("s3_access_key", "s3_secret_key", "s3_session_token")
# Job settings that matter on resume beside the label settings: resuming into an output written with
# other values would mix two kinds of rows (other guards) or other shards, so the job refuses.
JOB_ONLY_RESUME_KEYS = ("shard_size", "video_fps", "video_every_nth", "video_max_frames", "video_max_seconds")
# Older names of settings, still accepted in YAML files and --set.
KEY_ALIASES = {"model_revision": "revision"}


class JobSettingsError(UserError, ValueError):
    """A job setting is missing or wrong; the message says which and what to do."""

    prefix = "bad configuration: "


@dataclass(frozen=True)
class JobSettings:
    """Every setting of ``m2fp-batch run`` (see ``configs/default.yaml`` for the documented file).

    The engine settings (model, resize, decode guards, ...) are ``engine``, an :class:`EngineSettings`;
    in YAML and ``--set`` they are flat keys beside the job's own (``short_edge: 640``).
    """

    input: str | None = None
    output: str | None = None
    engine: EngineSettings = field(default_factory=EngineSettings)
    overwrite: bool = False
    # manifest (Parquet or CSV)
    uri_column: str = "uri"
    image_id_column: str = "image_id"
    # inference
    batch_size: int = 4  # images labelled per crash-ledger batch; the smallest block (an actor call)
    forward_batch: int = 1  # images per forward pass (same padded size); 1 is fastest on CPU
    # output
    shard_size: int = 256
    compression: str = "zstd"
    # Ray
    address: str | None = None
    num_cpus: int | None = None  # a local Ray only
    cpus_per_actor: float = 1.0  # one single-thread actor per CPU: faster than fewer, wider ones (docs/job.md)
    autoscaling: bool = False  # False: a fixed cluster, every actor starts at once (min = max)
    min_actors: int = 1  # the pool's minimum on an autoscaling cluster (autoscaling: true)
    max_actors: int | None = None  # None: cluster CPUs // cpus_per_actor
    read_cpus: float = 0.0
    read_concurrency: int = 4
    # GPUs (docs/job.md "GPU actors"): each actor's share of a GPU (0: CPU actors; 0.5: two actors per GPU)
    gpus_per_actor: float = 0.0
    # the staged pipeline: decode/resize in CPU tasks -> the device actor -> rows in CPU tasks
    # (None: staged when gpus_per_actor > 0; true runs the same stages on CPU actors)
    staged: bool | None = None
    stage_cpus: float = 1.0  # CPUs of each task of the staged pipeline's decode and row stages
    max_worker_crashes: int = 2
    # videos (docs/video.md): which frames become rows
    video_fps: float = 1.0  # frames sampled a second, by presentation time
    video_every_nth: int | None = None  # instead: every n-th decoded frame
    video_max_frames: int | None = None  # at most this many frames a video
    video_max_seconds: float | None = None  # only the first seconds of a video
    progress_interval_s: float = 10.0
    # S3 (else the standard AWS_* variables)
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_session_token: str | None = None

    # ------------------------------------------------------------------ building
    @classmethod
    def job_keys(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "engine"]

    @classmethod
    def keys(cls) -> list[str]:
        """Every flat setting name (YAML, ``--set``): the job's own and the engine's."""
        return cls.job_keys() + list(EngineSettings.names())

    @classmethod
    def from_sources(cls, config_file: str | None = None, overrides: dict[str, Any] | None = None) -> JobSettings:
        """YAML file (optional), then overrides (None values ignored); validated."""
        values: dict[str, Any] = {}
        if config_file:
            values.update({KEY_ALIASES.get(k, k): v for k, v in load_yaml(config_file).items()})
        for k, v in (overrides or {}).items():
            if v is not None:
                values[KEY_ALIASES.get(k, k)] = v
        unknown = sorted(set(values) - set(cls.keys()))
        if unknown:
            raise JobSettingsError(f"unknown setting(s) {unknown}; valid settings: {', '.join(cls.keys())}")
        coerced = {k: _coerce(k, v) for k, v in values.items()}
        engine_names = EngineSettings.names()
        try:
            engine = EngineSettings(**{k: v for k, v in coerced.items() if k in engine_names})
        except SettingsError as e:
            raise JobSettingsError(str(e)) from e
        cfg = cls(engine=engine, **{k: v for k, v in coerced.items() if k not in engine_names})
        if engine.device == "auto":  # the job's actors get their GPUs from Ray: auto means "if asked for"
            cfg = replace(cfg, engine=replace(engine, device="cuda" if cfg.gpus_per_actor else "cpu"))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise :class:`JobSettingsError` naming the first wrong job setting (the engine's checked itself)."""
        if not self.input:
            raise JobSettingsError(
                "no input: pass --input DIR|MANIFEST (a directory of images, or a .parquet/.csv manifest)"
            )
        if not self.output:
            raise JobSettingsError("no output: pass --out DIR (where the Parquet shards go)")
        for k in ("batch_size", "forward_batch", "shard_size", "read_concurrency", "min_actors", "max_worker_crashes"):
            if getattr(self, k) < 1:
                raise JobSettingsError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.cpus_per_actor <= 0:
            raise JobSettingsError(f"cpus_per_actor must be > 0, got {self.cpus_per_actor}")
        if self.read_cpus < 0:
            raise JobSettingsError(f"read_cpus must be >= 0, got {self.read_cpus}")
        self._validate_devices()
        try:
            self.engine.check_labelling()
        except SettingsError as e:
            raise JobSettingsError(str(e)) from e
        if self.max_actors is not None and self.max_actors < self.min_actors:
            raise JobSettingsError(f"max_actors ({self.max_actors}) must be >= min_actors ({self.min_actors})")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise JobSettingsError(f"num_cpus must be >= 1, got {self.num_cpus}")
        if self.progress_interval_s <= 0:
            raise JobSettingsError(f"progress_interval_s must be > 0, got {self.progress_interval_s}")
        if self.compression not in COMPRESSIONS:
            raise JobSettingsError(f"compression must be one of {', '.join(COMPRESSIONS)}; got {self.compression!r}")
        if self.uri_column == self.image_id_column:
            raise JobSettingsError("uri_column and image_id_column must differ")
        self._validate_video()

    def _validate_video(self) -> None:
        if not 0 < self.video_fps <= MAX_VIDEO_FPS:
            raise JobSettingsError(f"video_fps must be in (0, {MAX_VIDEO_FPS}] frames a second, got {self.video_fps}")
        for k in ("video_every_nth", "video_max_frames"):
            if getattr(self, k) is not None and getattr(self, k) < 1:
                raise JobSettingsError(f"{k} must be >= 1 (or null), got {getattr(self, k)}")
        if self.video_max_seconds is not None and self.video_max_seconds <= 0:
            raise JobSettingsError(f"video_max_seconds must be > 0 (or null), got {self.video_max_seconds}")

    @property
    def sampling(self) -> Sampling:
        """Which frames of a video become rows (the video_* settings)."""
        return Sampling(self.video_fps, self.video_every_nth, self.video_max_frames, self.video_max_seconds)

    def _validate_devices(self) -> None:
        """gpus_per_actor, stage_cpus and the engine's device agree (Ray gives each actor its GPU)."""
        device = self.engine.device
        if self.gpus_per_actor and not is_gpu_share(self.gpus_per_actor):
            raise JobSettingsError(
                f"gpus_per_actor must be 0 (CPU actors), a fraction in (0, 1] or whole GPUs; got {self.gpus_per_actor}"
            )
        if device.startswith("cuda:"):
            raise JobSettingsError(
                f"device {device}: an actor gets its GPU from Ray (gpus_per_actor); use device: cuda"
            )
        if device == "cuda" and not self.gpus_per_actor:
            raise JobSettingsError(
                "device cuda needs gpus_per_actor > 0 (e.g. --gpus-per-actor 1): Ray gives each actor its GPU"
            )
        if device == "cpu" and self.gpus_per_actor:
            raise JobSettingsError(
                f"gpus_per_actor={self.gpus_per_actor:g} reserves GPUs that device cpu never uses: set device: cuda"
            )
        if self.stage_cpus <= 0:
            raise JobSettingsError(f"stage_cpus must be > 0, got {self.stage_cpus}")

    @property
    def is_staged(self) -> bool:
        """The staged pipeline (CPU decode tasks -> device actors -> CPU row tasks) runs this job."""
        return self.staged if self.staged is not None else self.gpus_per_actor > 0

    # ------------------------------------------------------------------ output
    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        """Every setting as flat keys (the YAML names), secrets replaced by ``***`` when ``redact``."""
        d = {k: getattr(self, k) for k in self.job_keys()} | self.engine.to_dict()
        if redact:
            for k in SECRET_KEYS:
                if d.get(k):
                    d[k] = "***"
        return d

    def resume_settings(self) -> dict[str, Any]:
        """What an output's rows depend on, compared on resume: the label settings (``config_hash``),
        the decode guards (which photos get labels) and the job-only ``JOB_ONLY_RESUME_KEYS``."""
        return {
            **self.engine.label_settings(),
            **self.engine.guards(),
            **{k: getattr(self, k) for k in JOB_ONLY_RESUME_KEYS},
        }

    def ray_address(self) -> str | None:
        """``address`` if set, else ``RAY_ADDRESS``, else None (start a local Ray)."""
        return self.address or os.environ.get("RAY_ADDRESS") or None


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise JobSettingsError(f"config file {str(p)!r} does not exist")
    try:
        data = strict_load(p.read_text(), f"config file {str(p)!r}") or {}
    except yaml.YAMLError as e:
        raise JobSettingsError(f"config file {str(p)!r} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise JobSettingsError(f"config file {str(p)!r} must be a mapping of setting: value")
    return data


_TYPES = {f.name: f.type for f in fields(JobSettings) if f.name != "engine"} | {
    f.name: f.type for f in fields(EngineSettings)
}


def _coerce(key: str, value: Any) -> Any:
    """Check and convert one value to its setting's type (YAML or ``--set`` strings)."""
    t = str(_TYPES[key])
    optional = "None" in t
    if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "") and optional):
        if not optional:
            raise JobSettingsError(f"{key} cannot be null")
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
        raise JobSettingsError(f"{key}: expected {t} (finite), got {value!r}") from e
    return value


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """``["key=value", ...]`` from ``--set`` -> dict (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise JobSettingsError(f"--set {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        out[k.strip()] = strict_load(v, f"--set {item!r}") if v.strip() else None
    return out


# The old names (one release): "settings" names what a user sets, "config" only a file
__getattr__ = old_names(
    __name__, {"JobConfig": f"{__name__}:JobSettings", "JobConfigError": f"{__name__}:JobSettingsError"}
)
