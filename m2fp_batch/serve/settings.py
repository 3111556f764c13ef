"""The service's settings: one typed object, validated before Ray starts."""

from __future__ import annotations

import os
from dataclasses import dataclass

from m2fp_batch.settings import EngineSettings, SettingsError, is_gpu_share

__all__ = ["LS_PREFIX", "SERVE_ENGINE", "ServeSettings"]

# The service's engine defaults: the job's, with a lower pixel limit (a replica holds several uploads at once).
SERVE_ENGINE = EngineSettings(max_pixels=40_000_000)
# Where the Label Studio ML backend's routes live (/ls/predict, /ls/setup, /ls/health, /ls/webhook).
LS_PREFIX = "/ls"


@dataclass(frozen=True)
class ServeSettings:
    """Every setting of ``m2fp-batch serve``.

    Attributes:
        engine: the engine settings, the job's (model, resize, decode guards, brightening); their
            ``label_hash`` is every answer's ``config_hash``. ``engine.threads``: torch threads per
            replica (None: the machine's CPUs / replicas).
        host, port: where the HTTP server listens (loopback unless told).
        replicas: model replicas; each loads the model once.
        max_batch: images of the same padded size per forward pass (``serve.batch``).
        batch_wait_s: how long a replica waits to fill a batch.
        queue_per_replica: parse requests that may wait per replica; beyond that 503 + Retry-After.
        max_body_bytes: request body limit (413 above it).
        retry_after_s: the ``Retry-After`` of a 503.
        cache_entries, cache_bytes: bound of the ``/results/...`` cache.
        address: a Ray cluster to join (None: start a local Ray).
        gpus_per_replica: GPUs a replica holds when ``engine.device`` is not the CPU (fractional:
            replicas share a GPU).
        reviewed_out: the Label Studio ML backend's reviewed-labels dir (``/ls/webhook`` events), or None.
        allow_fetch: the ML backend may fetch task photos from hosts other than the connected Label Studio.
        ls_auth_env: the variable holding the ML backend's basic-auth ``USER:PASSWORD`` (None: no auth).
    """

    engine: EngineSettings = SERVE_ENGINE
    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 1
    max_batch: int = 1  # on CPU a pass of 4 640-px photos takes 1.3x four single passes
    batch_wait_s: float = 0.01
    queue_per_replica: int = 32
    max_body_bytes: int = 20 * 2**20
    retry_after_s: int = 2
    cache_entries: int = 256
    cache_bytes: int = 128 * 2**20
    address: str | None = None
    gpus_per_replica: float = 1.0
    reviewed_out: str | None = None
    allow_fetch: bool = False
    ls_auth_env: str | None = None

    def __post_init__(self) -> None:
        positive = (
            "port",
            "replicas",
            "max_batch",
            "queue_per_replica",
            "max_body_bytes",
            "cache_entries",
            "cache_bytes",
        )
        for key in positive:
            if getattr(self, key) < 1:
                raise SettingsError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.batch_wait_s < 0 or self.retry_after_s < 0:
            raise SettingsError("batch_wait_s and retry_after_s must be >= 0")
        self.engine.check_labelling()
        if not is_gpu_share(self.gpus_per_replica):
            raise SettingsError(
                f"gpus_per_replica must be a fraction in (0, 1] or whole GPUs, got {self.gpus_per_replica}"
            )
        if self.engine.device.startswith("cuda:"):
            raise SettingsError(
                f"--device {self.engine.device}: a replica gets its GPU from Ray (--gpus-per-replica); use --device cuda"
            )
        if self.port > 65535:
            raise SettingsError(f"port must be <= 65535, got {self.port}")
        if self.ls_auth_env is not None:
            user, sep, password = os.environ.get(self.ls_auth_env, "").partition(":")
            if not (user and sep and password):
                raise SettingsError(f"--ls-auth-env {self.ls_auth_env}: set that variable to USER:PASSWORD")

    @property
    def replica_threads(self) -> int:
        return self.engine.threads or max(1, (os.cpu_count() or 1) // self.replicas)

    @property
    def replica_gpus(self) -> float:
        """GPUs Ray gives each replica: none on the CPU."""
        return 0.0 if self.engine.device == "cpu" else self.gpus_per_replica

    @property
    def replica_ongoing(self) -> int:
        """Requests a replica holds at once: a batch computing, the next one filling, rows being built."""
        return 2 * self.max_batch + 2

    @property
    def capacity(self) -> int:
        """Parse requests admitted at once (the rest get 503): waiting plus in the replicas."""
        return self.replicas * (self.queue_per_replica + self.replica_ongoing)
