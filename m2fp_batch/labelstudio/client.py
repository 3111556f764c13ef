"""A small Label Studio REST client (urllib): the calls push and pull make, each failure one sentence.

The token is read from the environment (``LABEL_STUDIO_API_KEY``, the SDK's convention, or the
variable ``--token-env`` names) and sent as ``Authorization: Token ...`` (Label Studio's legacy
token; start the server with ``--enable-legacy-api-token``). It never appears in a message or a log.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from m2fp_batch.errors import UserError

__all__ = [
    "DEFAULT_TOKEN_ENV",
    "MAX_RESPONSE_BYTES",
    "Client",
    "LabelStudioAuthError",
    "LabelStudioError",
    "LabelStudioUnreachable",
    "token_from_env",
]

log = logging.getLogger(__name__)

DEFAULT_TOKEN_ENV = "LABEL_STUDIO_API_KEY"
MAX_RESPONSE_BYTES = 1 << 30  # a page of tasks with their masks stays far below this
PAGE_SIZE = 100
TIMEOUT_S = 120.0


class LabelStudioError(UserError):
    """Label Studio refused a call or answered something unexpected (the message says which)."""


class LabelStudioUnreachable(LabelStudioError):
    """Nothing answers at the URL, or it is not a Label Studio server."""


class LabelStudioAuthError(LabelStudioError):
    """The token is missing or Label Studio refused it."""


def token_from_env(name: str = DEFAULT_TOKEN_ENV) -> str:
    """The API token from environment variable ``name``.

    Raises:
        LabelStudioAuthError: the variable is unset or empty.
    """
    token = os.environ.get(name, "").strip()
    if not token:
        raise LabelStudioAuthError(
            f"no Label Studio token: set {name} to your API token (Account & Settings in Label Studio), "
            "or name another variable with --token-env"
        )
    return token


class Client:
    """Calls to one Label Studio server (``url``: its base, e.g. http://127.0.0.1:8080)."""

    def __init__(self, url: str, token: str, timeout: float = TIMEOUT_S) -> None:
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise LabelStudioUnreachable(f"--url {url!r} is not an http(s) URL of a Label Studio server")
        self.url = url.rstrip("/")
        self._token = token
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def _request(self, method: str, path: str, body: Any = None, headers: dict | None = None) -> urllib.request.Request:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Token {self._token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        return req

    def _unreachable(self, e: BaseException) -> LabelStudioUnreachable:
        return LabelStudioUnreachable(f"cannot reach Label Studio at {self.url}: {getattr(e, 'reason', e)}")

    def _open(self, method: str, path: str, body: Any = None):
        try:
            return urllib.request.urlopen(self._request(method, path, body), timeout=self.timeout)  # noqa: S310
        except urllib.error.HTTPError as e:
            raise self._http_error(method, path, e) from None
        except (urllib.error.URLError, OSError) as e:
            raise self._unreachable(e) from None

    def _http_error(self, method: str, path: str, e: urllib.error.HTTPError) -> LabelStudioError:
        detail = e.read(2000).decode("utf-8", "replace")
        try:
            parsed = json.loads(detail)
            detail = parsed.get("detail") or parsed.get("validation_errors") or detail
        except (ValueError, AttributeError):
            pass
        if e.code in (401, 403):
            return LabelStudioAuthError(
                f"Label Studio at {self.url} refused the token (HTTP {e.code}): check the API token, and that the "
                "server allows legacy tokens (label-studio start --enable-legacy-api-token)"
            )
        if e.code == 404 and path.startswith("/api/projects") and method == "GET" and "?" in path:
            return LabelStudioUnreachable(f"{self.url} answered 404 to its project list: is it a Label Studio server?")
        return LabelStudioError(f"Label Studio at {self.url} answered HTTP {e.code} to {method} {path}: {detail}")

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One API call; the decoded JSON answer (None when empty)."""
        with self._open(method, path, body) as resp:
            raw = resp.read(MAX_RESPONSE_BYTES + 1)
        if len(raw) > MAX_RESPONSE_BYTES:
            raise LabelStudioError(f"Label Studio's answer to {method} {path} exceeds {MAX_RESPONSE_BYTES} bytes")
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise LabelStudioUnreachable(
                f"{self.url} answered {method} {path} with something that is not JSON: is it a Label Studio server?"
            ) from None

    def status(self, path: str) -> int:
        """The HTTP status of GET ``path`` (reads at most a few bytes): whether Label Studio serves it."""
        req = self._request("GET", path, headers={"Range": "bytes=0-15"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                resp.read(16)
                return int(resp.status)
        except urllib.error.HTTPError as e:
            if e.code in (401, 403):
                raise self._http_error("GET", path, e) from None
            return int(e.code)
        except (urllib.error.URLError, OSError) as e:
            raise self._unreachable(e) from None

    def projects(self) -> list[dict]:
        """Every project this token sees."""
        out, page = [], 1
        while True:
            got = self.call("GET", f"/api/projects?page={page}&page_size={PAGE_SIZE}")
            if not isinstance(got, dict) or "results" not in got:
                raise LabelStudioUnreachable(
                    f"{self.url} answered its project list oddly: is it a Label Studio server?"
                )
            out += got["results"]
            if not got.get("next"):
                return out
            page += 1

    def tasks(self, project_id: int) -> Iterator[dict]:
        """Every task of a project, with its annotations and predictions, in id order."""
        page, seen = 1, 0
        while True:
            got = self.call("GET", f"/api/tasks?project={project_id}&fields=all&page={page}&page_size={PAGE_SIZE}")
            tasks = (got or {}).get("tasks") or []
            yield from tasks
            seen += len(tasks)
            if not tasks or seen >= int((got or {}).get("total") or 0):
                return
            page += 1

    def users(self) -> dict[int, str]:
        """User id -> e-mail (or username)."""
        got = self.call("GET", "/api/users") or []
        return {int(u["id"]): u.get("email") or u.get("username") or str(u["id"]) for u in got}
