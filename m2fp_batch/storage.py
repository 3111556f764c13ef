"""Where images, manifests and outputs live: local paths or ``s3://`` through pyarrow filesystems.

S3 settings come from the job config (``s3_*``) or the standard AWS variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION`` /
``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlparse

import pyarrow.fs as pafs


@dataclass(frozen=True)
class S3Options:
    """Connection settings for S3-compatible stores (picklable; built on each worker)."""

    endpoint: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None

    @classmethod
    def from_env(cls) -> S3Options:
        """Settings from the standard AWS variables alone (readers outside the job)."""
        env = os.environ
        return cls(
            endpoint=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL"),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
            access_key=env.get("AWS_ACCESS_KEY_ID"),
            secret_key=env.get("AWS_SECRET_ACCESS_KEY"),
            session_token=env.get("AWS_SESSION_TOKEN"),
        )

    @classmethod
    def from_config(cls, cfg) -> S3Options:
        """The job config's ``s3_*`` settings, each falling back to its AWS variable."""
        env = cls.from_env()
        return cls(
            endpoint=cfg.s3_endpoint or env.endpoint,
            region=cfg.s3_region or env.region,
            access_key=cfg.s3_access_key or env.access_key,
            secret_key=cfg.s3_secret_key or env.secret_key,
            session_token=cfg.s3_session_token or env.session_token,
        )

    def filesystem(self) -> pafs.S3FileSystem:
        kwargs: dict = {"region": self.region or "us-east-1"}
        if self.endpoint:
            u = urlparse(self.endpoint if "://" in self.endpoint else "https://" + self.endpoint)
            kwargs["endpoint_override"] = u.netloc
            kwargs["scheme"] = u.scheme
        if self.access_key:
            kwargs.update(access_key=self.access_key, secret_key=self.secret_key, session_token=self.session_token)
        return pafs.S3FileSystem(**kwargs)


def is_s3(uri: str) -> bool:
    return uri.lower().startswith("s3://")


class Filesystems:
    """Resolves a uri to (filesystem, path), caching one S3 filesystem."""

    def __init__(self, s3: S3Options | None = None) -> None:
        self.s3_options = s3 or S3Options.from_env()
        self._s3: pafs.S3FileSystem | None = None
        self._local = pafs.LocalFileSystem()

    def resolve(self, uri: str) -> tuple[pafs.FileSystem, str]:
        if is_s3(uri):
            if self._s3 is None:
                self._s3 = self.s3_options.filesystem()
            return self._s3, uri[5:]
        if "://" in uri and not uri.lower().startswith("file://"):
            raise ValueError(f"{uri!r}: only local paths and s3:// are supported")
        path = uri[7:] if uri.lower().startswith("file://") else uri
        return self._local, os.path.abspath(os.path.expanduser(path))

    def read_bytes(self, uri: str) -> bytes:
        fs, path = self.resolve(uri)
        with fs.open_input_stream(path) as f:
            return f.read()


def join(base: str, *parts: str) -> str:
    """Join uri parts with '/' (works for local paths and s3://)."""
    out = base.rstrip("/")
    for p in parts:
        out = out + "/" + p.strip("/")
    return out


def to_uri(fs: pafs.FileSystem, path: str) -> str:
    """The inverse of :meth:`Filesystems.resolve` (Ray and pyarrow drop the ``s3://``)."""
    return "s3://" + path if isinstance(fs, pafs.S3FileSystem) else path
