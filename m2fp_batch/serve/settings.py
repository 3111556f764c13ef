"""The service's settings: one typed object, validated before Ray starts."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from m2fp_batch.decode import MAX_SIZE, SHORT_EDGE
from m2fp_batch.errors import UserError

# Settings that change what a parse contains (hashed into the answers' ``config_hash``).
RESULT_KEYS = ("model", "model_revision", "max_pixels", "min_side", "short_edge", "max_size", "adaptive_brightness")


class ServeSettingsError(UserError, ValueError):
    """A service setting is out of range; the message says which."""


@dataclass(frozen=True)
class ServeSettings:
    """Every setting of ``m2fp-batch serve``.

    Attributes:
        model: local model dir or ModelScope id.
        host, port: where the HTTP server listens (loopback unless told).
        replicas: model replicas; each loads the model once.
        threads: torch threads per replica (None: the machine's CPUs / replicas).
        max_batch: images of the same padded size per forward pass (``serve.batch``).
        batch_wait_s: how long a replica waits to fill a batch.
        queue_per_replica: parse requests that may wait per replica; beyond that 503 + Retry-After.
        max_body_bytes: request body limit (413 above it).
        max_pixels, min_side: the job's decoding guards.
        retry_after_s: the ``Retry-After`` of a 503.
        cache_entries, cache_bytes: bound of the ``/results/...`` cache.
        address: a Ray cluster to join (None: start a local Ray).
    """

    model: str
    model_revision: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 1
    threads: int | None = None
    max_batch: int = 1  # on CPU a pass of 4 640-px photos takes 1.3x four single passes
    batch_wait_s: float = 0.01
    queue_per_replica: int = 32
    max_body_bytes: int = 20 * 2**20
    max_pixels: int = 40_000_000
    min_side: int = 8
    short_edge: int = SHORT_EDGE
    max_size: int = MAX_SIZE
    adaptive_brightness: bool = False
    retry_after_s: int = 2
    cache_entries: int = 256
    cache_bytes: int = 128 * 2**20
    address: str | None = None

    def __post_init__(self) -> None:
        positive = (
            "port", "replicas", "max_batch", "queue_per_replica", "max_body_bytes", "max_pixels", "min_side",
            "short_edge", "max_size", "cache_entries", "cache_bytes",
        )  # fmt: skip
        for key in positive:
            if getattr(self, key) < 1:
                raise ServeSettingsError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.threads is not None and self.threads < 1:
            raise ServeSettingsError(f"threads must be >= 1, got {self.threads}")
        if self.batch_wait_s < 0 or self.retry_after_s < 0:
            raise ServeSettingsError("batch_wait_s and retry_after_s must be >= 0")
        if self.port > 65535:
            raise ServeSettingsError(f"port must be <= 65535, got {self.port}")

    @property
    def replica_threads(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.replicas)

    @property
    def replica_ongoing(self) -> int:
        """Requests a replica holds at once: a batch computing, the next one filling, rows being built."""
        return 2 * self.max_batch + 2

    @property
    def capacity(self) -> int:
        """Parse requests admitted at once (the rest get 503): waiting plus in the replicas."""
        return self.replicas * (self.queue_per_replica + self.replica_ongoing)

    def config_hash(self) -> str:
        values = {k: getattr(self, k) for k in RESULT_KEYS}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]
