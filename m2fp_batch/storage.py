"""Where images, manifests and outputs live: local paths or ``s3://`` through pyarrow filesystems.

S3 settings come from the job config (``s3_*``) or the standard AWS variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION`` /
``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import os
import posixpath
import queue
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlparse

import pyarrow.fs as pafs

from m2fp_batch.errors import UserError

S3_CONNECT_TIMEOUT_S = 5.0
S3_REQUEST_TIMEOUT_S = 60.0
S3_MAX_ATTEMPTS = 3
# Listing a prefix: sub-prefixes listed at once, and the pages each may hold ahead of the consumer
S3_LIST_WORKERS = 8
S3_LIST_QUEUE_PAGES = 4
# The job's default per-file byte limit (setting max_bytes), and the readers' limit for an
# image named by a label row: reads stop at max_bytes + 1, checked before decoding.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


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
        # bounded: an unreachable endpoint fails in seconds, not after minutes of retries
        kwargs: dict = {
            "region": self.region or "us-east-1",
            "connect_timeout": S3_CONNECT_TIMEOUT_S,
            "request_timeout": S3_REQUEST_TIMEOUT_S,
            "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=S3_MAX_ATTEMPTS),
        }
        if self.endpoint:
            u = urlparse(self.endpoint if "://" in self.endpoint else "https://" + self.endpoint)
            kwargs["endpoint_override"] = u.netloc
            kwargs["scheme"] = u.scheme
        if self.access_key:
            kwargs.update(access_key=self.access_key, secret_key=self.secret_key, session_token=self.session_token)
        return pafs.S3FileSystem(**kwargs)

    def client(self, attempts: int = S3_MAX_ATTEMPTS, connections: int = 10):
        """A boto3 S3 client with these settings (thread-safe; needs boto3).

        Raises:
            StorageError: boto3 is not installed.
        """
        try:
            import boto3
            from botocore.config import Config
        except ImportError as e:
            raise StorageError(f"this S3 operation needs boto3: pip install boto3 ({e})") from e
        endpoint = self.endpoint if not self.endpoint or "://" in self.endpoint else "https://" + self.endpoint
        config = Config(
            signature_version="s3v4",
            connect_timeout=S3_CONNECT_TIMEOUT_S,
            read_timeout=S3_REQUEST_TIMEOUT_S,
            retries={"max_attempts": attempts},
            max_pool_connections=connections,
        )
        return boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=self.region or "us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            aws_session_token=self.session_token,
            config=config,
        )

    def presign(self, uri: str, expires_s: int) -> str:
        """A presigned GET URL of ``s3://bucket/key`` valid ``expires_s`` seconds (needs boto3).

        Raises:
            StorageError: boto3 is not installed, or the uri is not ``s3://bucket/key``.
        """
        bucket, _, key = uri[5:].partition("/") if is_s3(uri) else ("", "", "")
        if not bucket or not key:
            raise StorageError(f"{uri!r} is not an s3://bucket/key uri")
        client = self.client(attempts=1)
        return client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_s)


def is_s3(uri: str) -> bool:
    return uri.lower().startswith("s3://")


class StorageError(UserError, ValueError):
    """A uri this job cannot address (unsupported scheme); the message says which."""


def normalize_uri(uri: str) -> str:
    """One spelling per file: ``a.jpg``, ``./a.jpg`` and ``//x/../a.jpg`` become one absolute path.

    Local paths become absolute and normalised (``~`` expanded, a leading ``//`` made ``/``);
    ``s3://bucket/key`` keys lose ``.``/``..`` segments and repeated slashes.
    """
    if is_s3(uri):
        bucket, _, key = uri[5:].partition("/")
        key = posixpath.normpath("/" + key).lstrip("/") if key else ""
        return f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    path = uri[7:] if uri.lower().startswith("file://") else uri
    path = os.path.abspath(os.path.expanduser(path))
    return "/" + path.lstrip("/") if path.startswith("//") else path


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
            scheme = uri.split("://", 1)[0]
            raise StorageError(f"{uri!r}: the scheme {scheme}:// is not supported (only local paths and s3://)")
        return self._local, normalize_uri(uri)

    def read_bytes(self, uri: str, max_bytes: int) -> bytes:
        """The file's bytes, reading at most ``max_bytes + 1``; only regular files are opened.

        Raises:
            NotARegularFileError: a FIFO, device, socket or directory (checked before opening,
                symlinks followed, so a named pipe never blocks and /dev/zero is never read).
            FileTooLargeError: the file (or its stream) holds more than ``max_bytes`` bytes.
        """
        fs, path = self.resolve(uri)
        if isinstance(fs, pafs.LocalFileSystem):
            return _read_local(path, max_bytes)
        with fs.open_input_stream(path) as f:
            data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise FileTooLargeError(f"the object holds more than max_bytes={max_bytes} bytes")
        return data

    def open_seekable(self, uri: str):
        """A seekable binary file of ``uri`` (a video's demuxer reads what it needs); only regular
        files are opened (see :meth:`read_bytes`)."""
        fs, path = self.resolve(uri)
        if isinstance(fs, pafs.LocalFileSystem):
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode):
                raise NotARegularFileError(f"{_file_kind(st.st_mode)}, not a regular file: never read")
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            f = os.fdopen(fd, "rb")
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                f.close()
                raise NotARegularFileError("not a regular file (changed while being opened): never read")
            return f
        return fs.open_input_file(path)


class NotARegularFileError(OSError):
    """The path is not a regular file (FIFO, device, socket, directory)."""


class FileTooLargeError(OSError):
    """The file is larger than ``max_bytes``."""


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _read_local(path: str, max_bytes: int) -> bytes:
    st = os.stat(path)  # follows symlinks: a link to /dev/zero is a character device
    if not stat.S_ISREG(st.st_mode):
        raise NotARegularFileError(f"{_file_kind(st.st_mode)}, not a regular file: never read")
    if st.st_size > max_bytes:
        raise FileTooLargeError(f"the file is {st.st_size} bytes, above max_bytes={max_bytes}")
    # O_NONBLOCK: if the path was swapped for a FIFO after the check, open does not block on it
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise NotARegularFileError("not a regular file (changed while being read): never read")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileTooLargeError(f"the file grew above max_bytes={max_bytes} bytes while being read")
    return data


def join(base: str, *parts: str) -> str:
    """Join uri parts with '/' (works for local paths and s3://)."""
    out = base.rstrip("/")
    for p in parts:
        out = out + "/" + p.strip("/")
    return out


def to_uri(fs: pafs.FileSystem, path: str) -> str:
    """The inverse of :meth:`Filesystems.resolve` (Ray and pyarrow drop the ``s3://``)."""
    return "s3://" + path if isinstance(fs, pafs.S3FileSystem) else path


def list_s3(options: S3Options, bucket: str, prefix: str) -> Iterator[list[str]]:
    """The keys under ``prefix``, page by page, with bounded memory.

    The keys directly under ``prefix`` come first (one delimited listing, which also names the
    sub-prefixes), then each sub-prefix, listed whole: up to :data:`S3_LIST_WORKERS` of them
    are paged at once, each at most :data:`S3_LIST_QUEUE_PAGES` pages ahead of the consumer, and
    they are yielded in order. One flat prefix is paged alone: S3 pages follow one another.
    Only prefixes are relied on, not the key order (SeaweedFS, for one, lists a "directory"
    before its sibling keys).

    Raises:
        StorageError: the store refused or failed a listing request.
    """
    client = options.client(connections=S3_LIST_WORKERS)
    subs: list[str] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            subs += [p["Prefix"] for p in page.get("CommonPrefixes", ())]
            yield [o["Key"] for o in page.get("Contents", ())]
    except Exception as e:  # noqa: BLE001 -- botocore's errors have no common base worth naming
        raise _listing_failed(bucket, prefix, e) from e
    yield from _list_prefixes(client, bucket, sorted(subs))


def _listing_failed(bucket: str, prefix: str, e: Exception) -> StorageError:
    return StorageError(f"listing s3://{bucket}/{prefix} failed: {' '.join(str(e).split())}")


def _list_prefixes(client, bucket: str, prefixes: list[str]) -> Iterator[list[str]]:
    """The keys under each of ``prefixes`` (recursively), in that order, listed in parallel."""
    stop = threading.Event()
    queues: list[queue.Queue] = []

    def start(i: int) -> None:
        q: queue.Queue = queue.Queue(maxsize=S3_LIST_QUEUE_PAGES)
        queues.append(q)
        args = (client, bucket, prefixes[i], q, stop)
        threading.Thread(target=_list_prefix, args=args, daemon=True, name=f"s3-list-{i}").start()

    try:
        for i in range(min(S3_LIST_WORKERS, len(prefixes))):
            start(i)
        for i in range(len(prefixes)):
            while (page := queues[i].get()) is not None:
                if isinstance(page, Exception):
                    raise _listing_failed(bucket, prefixes[i], page)
                yield page
            if i + S3_LIST_WORKERS < len(prefixes):
                start(i + S3_LIST_WORKERS)
    finally:
        stop.set()


def _list_prefix(client, bucket: str, prefix: str, q: queue.Queue, stop: threading.Event) -> None:
    """Put the keys under ``prefix`` on ``q`` page by page, then None (or the error that ended the listing)."""
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            if not _put(q, [o["Key"] for o in page.get("Contents", ())], stop):
                return
        _put(q, None, stop)
    except Exception as e:  # noqa: BLE001 -- any failure of the listing is handed to the consumer, who raises it
        _put(q, e, stop)


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put ``item`` on ``q`` unless the consumer stopped; False when it did."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.5)
            return True
        except queue.Full:
            continue
    return False
