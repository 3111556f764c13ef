"""The Label Studio ML backend of the service (``/ls/...``): ``/setup``, ``/predict``, ``/health`` and
``/webhook`` over the same replicas, batching and labelling core as ``POST /api/parse``.

* ``/setup`` checks the project's labelling config (our 20 classes, :func:`.project.config_problem`)
  and keeps the Label Studio URL and token it sends; it answers ``{"model_version"}``.
* ``/predict`` fetches each task's photo from Label Studio (:mod:`m2fp_batch.labelstudio.ml_backend`)
  and answers the prediction ``label-studio push`` writes. A task whose photo cannot be fetched or
  decoded gets an empty result with ``error`` / ``error_kind`` (and a log line), never a 500.
* ``/webhook`` (``ANNOTATION_CREATED`` / ``UPDATED`` / ``ANNOTATIONS_DELETED``) is acknowledged at
  once (Label Studio waits 1 s); the task is then read back from Label Studio, its photo labelled
  again, and its latest annotation turned into ``label-studio pull``'s row, written to
  ``--reviewed-out``. A task left without annotations leaves the directory.

Plain asyncio, no Ray: the caller passes ``parse``, the coroutine that sends a ``ParseRequest`` to a
replica (its back-pressure errors propagate).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from m2fp_batch.labelstudio import ml_backend as lsb
from m2fp_batch.labelstudio import project as lsp
from m2fp_batch.labelstudio.client import Client, LabelStudioError
from m2fp_batch.labelstudio.pull import AnnotationError, reviewed_row
from m2fp_batch.serve.answers import FORMAT_LS_PREDICTION, FORMAT_LS_ROW, Reply
from m2fp_batch.serve.replica import ParseRequest
from m2fp_batch.serve.settings import ServeSettings

__all__ = ["REVIEW_ACTIONS", "BackendError", "MLBackend"]

log = logging.getLogger(__name__)

REVIEW_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED")
MAX_PENDING_REVIEWS = 256


class BackendError(Exception):
    """A request the backend refuses as a whole (``kind``: a service error kind)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


def _project_id(value: Any) -> int | None:
    """Label Studio's project uid (``"<id>.<created>"``) or a project object -> the project id."""
    if isinstance(value, dict):
        value = value.get("id")
    try:
        return int(str(value).split(".", 1)[0])
    except ValueError:
        return None


class MLBackend:
    """The ML backend's state (what ``/setup`` sent, the reviewed-labels dir) and its answers."""

    def __init__(self, settings: ServeSettings, parse: Callable[[ParseRequest], Awaitable[Reply]]) -> None:
        self.settings = settings
        self.parse = parse
        self.auth = lsb.read_basic_auth(settings.ls_auth_env)
        self.setup_url: str | None = None
        self.setup_token: str | None = None
        self.model_version: str | None = None
        self.reviewed = (
            lsb.ReviewedLog(settings.reviewed_out, "Label Studio ML backend (/ls/webhook)")
            if settings.reviewed_out
            else None
        )
        self.pending: set[tuple[int, int]] = set()
        self.lock = asyncio.Lock()
        self.tasks: set[asyncio.Task] = set()
        self.reviews = {"written": 0, "removed": 0, "failed": 0}

    @property
    def fetch_limit(self) -> int:
        """The most bytes read for one photo: the decode guard, and no more than ``/api/parse`` accepts."""
        return min(self.settings.engine.max_bytes, self.settings.max_body_bytes)

    def connection(self) -> lsb.Connection:
        return lsb.connection(self.setup_url, self.setup_token)

    def authorized(self, header: str | None) -> bool:
        return lsb.basic_auth_ok(header, self.auth)

    def health(self) -> dict:
        return {"status": "UP", "model_class": "M2FP", "reviews": dict(self.reviews)}

    @staticmethod
    def check_config(config: Any) -> None:
        problem = lsp.config_problem(config if isinstance(config, str) else "")
        if problem is not None:
            raise BackendError(
                "invalid_config",
                f"this Label Studio project cannot use the M2FP backend: {problem}. Create the project with "
                "`m2fp-batch label-studio push` or use its labelling config",
            )

    def setup(self, body: dict, model_version: str) -> dict:
        """``/setup``: check the config, keep Label Studio's URL and token; ``{"model_version"}``."""
        self.check_config(body.get("schema"))
        host, token = body.get("hostname"), body.get("access_token")
        self.setup_url = (
            host.rstrip("/") if isinstance(host, str) and host.startswith(("http://", "https://")) else None
        )
        self.setup_token = token if isinstance(token, str) and token else None
        self.model_version = model_version
        log.info("Label Studio ML backend set up for project %s by %s", body.get("project"), self.setup_url)
        return {"model_version": model_version}

    async def predict(self, body: dict, model_version: str) -> dict:
        """``/predict``: one result per task, in order (see the module doc)."""
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            raise BackendError("invalid_request", "the /predict body has no 'tasks' list")
        if "label_config" in body:
            self.check_config(body["label_config"])
        conn = self.connection()
        # a request's tasks go to the replicas a few at a time: a long task list waits here, not in their queue
        slots = asyncio.Semaphore(self.settings.replicas * self.settings.replica_ongoing)
        results = await asyncio.gather(*(self._predict_one(t, conn, model_version, slots) for t in tasks))
        return {"results": list(results), "model_version": model_version}

    async def _predict_one(self, task: Any, conn: lsb.Connection, model_version: str, slots: asyncio.Semaphore) -> dict:
        tid = task.get("id") if isinstance(task, dict) else None
        async with slots:
            try:
                ref = lsb.task_image(task, lsp.IMAGE)
                data = await asyncio.to_thread(
                    lsb.fetch_image, ref, tid, conn, allow_fetch=self.settings.allow_fetch, limit=self.fetch_limit
                )
            except lsb.FetchError as e:
                return self._empty(tid, e.kind, e.message, model_version)
            reply = await self.parse(ParseRequest(data, FORMAT_LS_PREDICTION, filename=ref))
        if reply.status != 200 or not reply.body or "prediction" not in reply.body:
            body = reply.body or {}
            return self._empty(tid, body.get("error_kind", "inference_error"), body.get("error", ""), model_version)
        return reply.body["prediction"]

    @staticmethod
    def _empty(task_id: Any, kind: str, message: str, model_version: str) -> dict:
        log.warning("Label Studio task %s: no prediction (%s): %s", task_id, kind, message)
        return {"result": [], "score": None, "model_version": model_version, "error_kind": kind, "error": message}

    # -- /webhook
    def webhook(self, body: dict) -> dict:
        """``/webhook``: acknowledge at once, update the reviewed-labels dir in the background."""
        action = body.get("action")
        if action not in REVIEW_ACTIONS or self.reviewed is None:
            return {"status": "ignored", "action": action}
        targets = self._targets(action, body)
        queued = 0
        for target in targets:
            if target in self.pending:  # the queued run reads the task's latest state anyway
                continue
            if len(self.pending) >= MAX_PENDING_REVIEWS:
                raise BackendError("overloaded", f"{MAX_PENDING_REVIEWS} reviewed tasks are waiting to be written")
            self.pending.add(target)
            job = asyncio.get_running_loop().create_task(self._review(*target))
            self.tasks.add(job)
            job.add_done_callback(self.tasks.discard)
            queued += 1
        return {"status": "accepted", "action": action, "tasks": [t for _, t in targets], "queued": queued}

    def _targets(self, action: str, body: dict) -> list[tuple[int, int]]:
        if action == "ANNOTATIONS_DELETED":
            ids = {int(a["id"]) for a in body.get("annotations") or [] if isinstance(a, dict) and "id" in a}
            return self.reviewed.tasks_of(ids)
        task, annotation = body.get("task") or {}, body.get("annotation") or {}
        tid = task.get("id") if isinstance(task, dict) else None
        tid = tid if tid is not None else annotation.get("task") if isinstance(annotation, dict) else None
        project = _project_id(body.get("project")) or _project_id(
            task.get("project") if isinstance(task, dict) else None
        )
        if tid is None or project is None:
            raise BackendError("invalid_request", f"the {action} event names no task or project")
        return [(project, int(tid))]

    async def _review(self, project: int, task_id: int) -> None:
        try:
            async with self.lock:
                self.pending.discard((project, task_id))
                await self._review_task(project, task_id)
        except (LabelStudioError, lsb.FetchError, AnnotationError, BackendError) as e:
            self.reviews["failed"] += 1
            log.error("reviewed task %s of project %s not written: %s", task_id, project, getattr(e, "message", e))

    async def _review_task(self, project: int, task_id: int) -> None:
        conn = self.connection()
        if not conn.url or not conn.token:
            raise BackendError("unauthorized", "no Label Studio URL and token yet (/setup or the environment)")
        client = Client(conn.url, conn.token)
        task = await asyncio.to_thread(client.call, "GET", f"/api/tasks/{task_id}")
        annotations = [a for a in (task or {}).get("annotations") or [] if isinstance(a, dict)]
        if not annotations:
            await asyncio.to_thread(self.reviewed.remove, project, task_id)
            self.reviews["removed"] += 1
            log.info(
                "task %s of project %s has no annotation left: removed from %s", task_id, project, self.reviewed.root
            )
            return
        ref = lsb.task_image(task, lsp.IMAGE)
        data = await asyncio.to_thread(
            lsb.fetch_image, ref, task_id, conn, allow_fetch=self.settings.allow_fetch, limit=self.fetch_limit
        )
        reply = await self.parse(ParseRequest(data, FORMAT_LS_ROW, filename=ref))
        if reply.status != 200 or not reply.body or "row" not in reply.body:
            raise BackendError("inference_error", (reply.body or {}).get("error", f"HTTP {reply.status}"))
        row = reviewed_row(reply.body["row"], task, {})
        ids = [int(a["id"]) for a in annotations if "id" in a]
        await asyncio.to_thread(self.reviewed.put, project, task_id, ids, row, data)
        self.reviews["written"] += 1
        log.info(
            "task %s of project %s: %s row written to %s", task_id, project, row["review_status"], self.reviewed.root
        )
