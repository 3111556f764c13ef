"""``label-studio connect``: register ``m2fp-batch serve``'s ML backend (``BACKEND/ls``) on a project.

Through Label Studio's API: the project is created with our labelling config when missing (as
``push`` does; an existing project must have it); the backend is created (or updated, when the project already has one at
that URL) with interactive pre-annotation on; the project is set to use its predictions
(``show_collab_predictions``, ``model_version`` = the backend's title); with basic auth the webhook
Label Studio made for the backend gets the same ``Authorization`` header. Then Label Studio's own
check of the backend (``GET /api/ml/ID``: ``/health`` then ``/setup``) is reported.
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass

from m2fp_batch.labelstudio.client import Client
from m2fp_batch.labelstudio.push import ensure_project

__all__ = ["DEFAULT_TITLE", "STATES", "ConnectSummary", "connect"]

DEFAULT_TITLE = "m2fp"
STATES = {"CO": "connected", "DI": "disconnected", "ER": "error", "TR": "training", "PR": "predicting"}


@dataclass
class ConnectSummary:
    """What ``connect`` did and what Label Studio says of the backend (printed as JSON)."""

    project: str
    project_id: int
    backend: str
    ml_backend_id: int
    created: bool
    state: str
    error: str | None
    model_version: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def _auth_fields(basic_auth: tuple[str, str] | None) -> dict:
    if basic_auth is None:
        return {"auth_method": "NONE"}
    return {"auth_method": "BASIC_AUTH", "basic_auth_user": basic_auth[0], "basic_auth_pass": basic_auth[1]}


def _webhook_auth(client: Client, project_id: int, backend: str, basic_auth: tuple[str, str]) -> None:
    """Give the backend's webhook (Label Studio made it with the backend) the basic-auth header."""
    header = "Basic " + base64.b64encode(f"{basic_auth[0]}:{basic_auth[1]}".encode()).decode()
    for hook in client.call("GET", f"/api/webhooks/?project={project_id}") or []:
        if str(hook.get("url", "")).rstrip("/") == backend + "/webhook":
            client.call("PATCH", f"/api/webhooks/{hook['id']}/", {"headers": {"Authorization": header}})


def connect(
    client: Client,
    project_name: str,
    backend: str,
    *,
    title: str = DEFAULT_TITLE,
    basic_auth: tuple[str, str] | None = None,
) -> ConnectSummary:
    """Register ``backend`` (the ML backend's base URL, ``.../ls``) on ``project_name`` (see the module doc).

    Raises:
        LabelStudioError: Label Studio refuses the backend (its message, e.g. a
        backend on a private network without ``USE_DEFAULT_BANNED_SUBNETS=false``);
        ForeignProjectError: the project's labelling config is not ours.
    """
    backend = backend.rstrip("/")
    pid = int(ensure_project(client, project_name)["id"])
    body = {"url": backend, "project": pid, "title": title, "is_interactive": True, **_auth_fields(basic_auth)}
    found = [m for m in client.call("GET", f"/api/ml?project={pid}") or [] if str(m.get("url")).rstrip("/") == backend]
    if found:
        ml = client.call("PATCH", f"/api/ml/{found[0]['id']}", body)
    else:
        ml = client.call("POST", "/api/ml", body)
    client.call("PATCH", f"/api/projects/{pid}", {"show_collab_predictions": True, "model_version": title})
    if basic_auth is not None:
        _webhook_auth(client, pid, backend, basic_auth)
    checked = client.call("GET", f"/api/ml/{int(ml['id'])}")  # Label Studio's own /health + /setup
    return ConnectSummary(
        project=project_name,
        project_id=pid,
        backend=backend,
        ml_backend_id=int(ml["id"]),
        created=not found,
        state=STATES.get(checked.get("state"), str(checked.get("state"))),
        error=checked.get("error_message") or None,
        model_version=checked.get("model_version") or None,
    )
