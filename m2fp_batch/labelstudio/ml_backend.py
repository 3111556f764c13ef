"""Label Studio's ML-backend protocol, the parts without a web server: which Label Studio to fetch
from, fetching a task's photo, the basic-auth check, and the reviewed-labels directory the
``/webhook`` events fill (``serve --reviewed-out DIR``). ``m2fp_batch.serve`` serves the routes.

Photos are fetched from the Label Studio that called ``/setup`` (its ``hostname`` and
``access_token``), or from ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` when set (the environment
wins): a path on it (``/data/upload/...``, ``/data/local-files/?d=...``) or an absolute URL of the same
origin with ``Authorization: Token``; a cloud-storage uri (``s3://``, ``gs://``, ``azure-blob://``)
through Label Studio's own resolver (``/tasks/ID/resolve/?fileuri=...``, a redirect to the presigned
URL; the token is never sent to the redirect's host); a presigned URL of serve's own S3 store (the
``AWS_ENDPOINT_URL`` it is configured with: what ``push`` names). Any other URL only with ``--allow-fetch``.
Every read is bounded; the token never appears in a message, a log or ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from m2fp_batch.labels.layout import EXPORT_FILE
from m2fp_batch.reviewed import ReviewedSummary
from m2fp_batch.reviewed import output_schema as reviewed_schema
from m2fp_batch.schema import output_schema
from m2fp_batch.storage import S3Options

__all__ = [
    "LS_TOKEN_ENV",
    "LS_URL_ENV",
    "STORAGE_SCHEMES",
    "Connection",
    "FetchError",
    "IMAGES_DIR",
    "SOURCE_FIELDS",
    "ReviewedLog",
    "basic_auth_ok",
    "connection",
    "fetch_image",
    "read_basic_auth",
    "task_image",
]

log = logging.getLogger(__name__)

LS_URL_ENV = "LABEL_STUDIO_URL"
LS_TOKEN_ENV = "LABEL_STUDIO_API_KEY"
STORAGE_SCHEMES = ("s3://", "gs://", "azure-blob://")
FETCH_TIMEOUT_S = 30.0
CHUNK = 1 << 20


class FetchError(Exception):
    """A task's photo cannot be fetched (``kind``: an error kind of the service, ``message``: one sentence)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


@dataclass(frozen=True)
class Connection:
    """The Label Studio photos are fetched from: its base URL and API token (either may be unknown)."""

    url: str | None
    token: str | None = field(default=None, repr=False)

    @property
    def origin(self) -> tuple[str, str] | None:
        return None if not self.url else _origin(self.url)


def _origin(url: str) -> tuple[str, str]:
    p = urllib.parse.urlsplit(url)
    port = p.port or (443 if p.scheme == "https" else 80)
    return p.scheme.lower(), f"{(p.hostname or '').lower()}:{port}"


def connection(setup_url: str | None, setup_token: str | None) -> Connection:
    """The Label Studio to fetch from: ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` when set, else
    what ``/setup`` sent."""
    url = os.environ.get(LS_URL_ENV, "").strip() or setup_url
    token = os.environ.get(LS_TOKEN_ENV, "").strip() or setup_token
    return Connection(url.rstrip("/") if url else None, token or None)


def task_image(task: dict, key: str) -> str:
    """The photo reference of a task (``data[key]``).

    Raises:
        FetchError: the task has none.
    """
    ref = (task.get("data") or {}).get(key) if isinstance(task, dict) else None
    if not isinstance(ref, str) or not ref.strip():
        raise FetchError("missing", f"task {task.get('id') if isinstance(task, dict) else task!r} has no data.{key}")
    return ref.strip()


def _shown(url: str) -> str:
    """A URL as messages and logs show it: no query string (a presigned URL's signature), except a local file's."""
    path, _, query = url.partition("?")
    return f"{path}?{query}"[:300] if query.startswith("d=") else path[:300]


def _presigned_s3(url: str) -> bool:
    """A presigned URL (``X-Amz-Signature``, as ``label-studio push`` names an ``s3://`` photo) of the S3
    store serve itself is configured for (``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``)."""
    endpoint = S3Options.from_env().endpoint
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    return bool(endpoint) and "X-Amz-Signature" in query and _origin(url) == _origin(endpoint)


def _resolve(ref: str, task_id: Any, conn: Connection, allow_fetch: bool) -> tuple[str, bool]:
    """(URL to read, whether Label Studio's token goes with it)."""
    if ref.startswith(STORAGE_SCHEMES):
        fileuri = base64.urlsafe_b64encode(ref.encode()).decode()
        ref = f"/tasks/{int(task_id)}/resolve/?fileuri={fileuri}"
    if ref.startswith("/") and not ref.startswith("//"):
        if not conn.url:
            raise FetchError(
                "unavailable",
                f"{ref} is a Label Studio path but no Label Studio is known: connect the backend (Label Studio "
                f"calls /setup) or set {LS_URL_ENV}",
            )
        return conn.url + ref, True
    scheme = urllib.parse.urlsplit(ref).scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchError("invalid_request", f"{_shown(ref)!r} is not an http(s) URL or a Label Studio path")
    if conn.url and _origin(ref) == conn.origin:
        return ref, True
    if _presigned_s3(ref):
        return ref, False
    if allow_fetch:
        return ref, False
    raise FetchError(
        "forbidden",
        f"{_shown(ref)} is outside the Label Studio at {conn.url or '(none yet)'}: start serve with --allow-fetch "
        "to fetch photos from other hosts",
    )


def fetch_image(ref: str, task_id: Any, conn: Connection, *, allow_fetch: bool, limit: int) -> bytes:
    """The bytes of a task's photo, at most ``limit`` (see the module doc).

    Raises:
        FetchError: refused, unreachable, not found, refused token, or larger than ``limit`` (``too_large``).
    """
    url, with_token = _resolve(ref, task_id, conn, allow_fetch)
    req = urllib.request.Request(url, headers={"Accept": "image/*,*/*"})
    shown = _shown(url)
    if with_token:
        if not conn.token:
            raise FetchError(
                "unauthorized",
                f"no Label Studio token to fetch {shown}: connect the backend (Label Studio calls /setup) "
                f"or set {LS_TOKEN_ENV}",
            )
        req.add_unredirected_header("Authorization", f"Token {conn.token}")  # never sent on to a redirect
    try:
        with urllib.request.urlopen(req, timeout=FETCH_TIMEOUT_S) as resp:  # noqa: S310 - checked by _resolve
            return _read_bounded(resp, shown, limit)
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            raise FetchError("unauthorized", f"Label Studio refused the token for {shown} (HTTP {e.code})") from None
        raise FetchError("not_found" if e.code == 404 else "unavailable", f"{shown} answered HTTP {e.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise FetchError("unavailable", f"cannot fetch {shown}: {getattr(e, 'reason', e)}") from None


def _read_bounded(resp, shown: str, limit: int) -> bytes:
    declared = resp.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise FetchError("too_large", f"{shown} holds {int(declared)} bytes, above the limit of {limit}")
    body = bytearray()
    while chunk := resp.read(CHUNK):
        body += chunk
        if len(body) > limit:
            raise FetchError("too_large", f"{shown} is larger than the limit of {limit} bytes")
    return bytes(body)


def read_basic_auth(env_name: str | None) -> tuple[str, str] | None:
    """(user, password) from the variable ``env_name`` (``USER:PASSWORD``); None when no variable is named.

    Raises:
        ValueError: the variable is unset or has no ``:``.
    """
    if not env_name:
        return None
    value = os.environ.get(env_name, "")
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError(f"--ls-auth-env {env_name}: set that variable to USER:PASSWORD (both non-empty)")
    return user, password


def basic_auth_ok(header: str | None, expected: tuple[str, str] | None) -> bool:
    """Whether an ``Authorization`` header carries the expected basic credentials (always, when none are set)."""
    if expected is None:
        return True
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(given, f"{expected[0]}:{expected[1]}".encode())


# The reviewed rows' own columns (passthrough columns of the job's schema): where the task came from.
SOURCE_FIELDS = pa.schema(
    [
        pa.field("label_studio_project", pa.int64()),
        pa.field("label_studio_task", pa.int64()),
        pa.field("label_studio_image", pa.string()),
    ]
)
IMAGES_DIR = "images"


class ReviewedLog:
    """``serve --reviewed-out DIR``: the reviewed layout (:mod:`m2fp_batch.reviewed`) kept one
    Label Studio task per Parquet file, ``task-<project>-<task>.parquet`` (one row), listed in
    ``_export.json``; the photo is kept under ``images/`` and is the row's ``uri`` (training reads it
    there), the task and its Label Studio photo URL are columns (:data:`SOURCE_FIELDS`). The photo,
    the row's file and then ``_export.json`` are each replaced atomically; an event processed twice
    rewrites the same files (one row per task, its latest annotation)."""

    def __init__(self, root: str | Path, source: str) -> None:
        self.root = Path(root).expanduser().resolve()
        (self.root / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        self.source = source
        self.schema = reviewed_schema(output_schema(SOURCE_FIELDS))

    @staticmethod
    def name(project: int, task: int) -> str:
        return f"task-{int(project)}-{int(task)}.parquet"

    def index(self) -> dict[str, dict]:
        """File name -> {project, task, annotations, review_status, review_edited} of every task written."""
        try:
            return dict(json.loads((self.root / EXPORT_FILE).read_text()).get("tasks") or {})
        except (OSError, ValueError, AttributeError):
            return {}

    def tasks_of(self, annotation_ids: set[int]) -> list[tuple[int, int]]:
        """(project, task) of the written tasks that hold one of these annotations."""
        return [(e["project"], e["task"]) for e in self.index().values() if annotation_ids & set(e["annotations"])]

    def _replace(self, target: Path, write) -> None:
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        write(tmp)
        os.replace(tmp, target)

    def put(self, project: int, task: int, annotations: list[int], row: dict, image: bytes) -> None:
        """Write (or replace) a task's reviewed row (``row["uri"]``: the task's photo reference) and its photo."""
        name = self.name(project, task)
        suffix = Path(urllib.parse.urlsplit(row["uri"]).path).suffix.lower()
        photo = self.root / IMAGES_DIR / f"{row['image_id']}{suffix if suffix.isascii() and len(suffix) <= 6 else ''}"
        self._replace(photo, lambda p: p.write_bytes(image))
        row = {
            **row,
            "uri": str(photo),
            "label_studio_project": int(project),
            "label_studio_task": int(task),
            "label_studio_image": row["uri"],
            "review_by": row.get("review_by"),
            "review_time": row.get("review_time"),
        }
        table = pa.Table.from_pylist([row], schema=self.schema)
        self._replace(self.root / name, lambda p: pq.write_table(table, p))
        index = self.index()
        index[name] = {
            "project": int(project),
            "task": int(task),
            "annotations": sorted(int(a) for a in annotations),
            "image": photo.name,
            "review_status": row["review_status"],
            "review_edited": bool(row["review_edited"]),
        }
        self._commit(index)

    def remove(self, project: int, task: int) -> None:
        """Drop a task whose annotations are all deleted (and its photo, when no other task has it)."""
        name = self.name(project, task)
        index = self.index()
        entry = index.pop(name, None)
        if entry is not None:
            self._commit(index)
            if entry.get("image") not in {e.get("image") for e in index.values()}:
                (self.root / IMAGES_DIR / str(entry.get("image"))).unlink(missing_ok=True)
        (self.root / name).unlink(missing_ok=True)

    def _commit(self, index: dict[str, dict]) -> None:
        summary = ReviewedSummary(source=self.source, dest=str(self.root), files=sorted(index))
        for entry in index.values():
            summary.count(entry)
        body = {**summary.to_dict(), "tasks": index}
        self._replace(
            self.root / EXPORT_FILE, lambda p: p.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
        )
