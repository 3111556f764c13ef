"""``label-studio push``: the job's ok rows as Label Studio tasks with pre-annotations, created or updated.

One task per ok row, keyed by ``image_id`` in the task data: a second push updates the tasks whose
labels, provenance or data changed (task data patched, our prediction replaced) and adds the new
rows; it never duplicates a task. New tasks are imported in the review queue's order (highest
``review_priority`` first, :mod:`m2fp_batch.review.priority`), so Label Studio's default order (task
id) is the queue; ``review_priority`` is also task data to sort by.

Images: a local file is served by Label Studio's local-files storage (``/data/local-files/?d=REL``,
REL relative to the server's ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``; push adds a local storage
per image folder to the project, never synced); an ``s3://`` image gets a presigned URL. Each image
is checked through the server before its task is sent: one Label Studio cannot serve becomes an
error row of the summary (``image_errors``), never a task with a broken image. A video frame's row
(its ``uri`` is the video) is no task: it is counted in ``skipped_frames`` (review videos with
``m2fp-batch review``).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from m2fp_batch.labels import decode_persons, is_frame, open_labels
from m2fp_batch.labelstudio import project as lsp
from m2fp_batch.labelstudio.client import Client, LabelStudioError
from m2fp_batch.review.convert import DEFAULT_LOW_SCORE, filepath, in_view, review_signals
from m2fp_batch.schema import STATUS_OK
from m2fp_batch.storage import S3Options, StorageError, is_s3

__all__ = [
    "DOCUMENT_ROOT_ENV",
    "PRESIGN_EXPIRES_S",
    "PushSummary",
    "ensure_project",
    "find_project",
    "prediction",
    "push",
]

log = logging.getLogger(__name__)

DOCUMENT_ROOT_ENV = "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"
PRESIGN_EXPIRES_S = 7 * 24 * 3600  # the most S3 signature v4 allows
IMPORT_BATCH = 50
LOCAL_FILES = "/data/local-files/?d="
SERVED = (200, 206)


class ImageNotServable(Exception):
    """An image Label Studio cannot serve (becomes an error row of the summary)."""


@dataclass
class PushSummary:
    """What a push did (printed as JSON)."""

    project: str
    project_id: int = 0
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped_errors: int = 0  # error rows of the job: no labels to review
    skipped_frames: int = 0  # video frames: a task's image is a file, a frame has none (review them with `review`)
    filtered: int = 0  # ok rows outside --view
    image_errors: list[dict] = field(default_factory=list)  # {image_id, uri, error}: not pushed
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def find_project(client: Client, name: str) -> dict | None:
    """The project titled ``name`` (None when there is none).

    Raises:
        LabelStudioError: several projects have that title.
    """
    found = [p for p in client.projects() if p.get("title") == name]
    if len(found) > 1:
        ids = ", ".join(str(p["id"]) for p in found)
        raise LabelStudioError(
            f"{len(found)} Label Studio projects are titled {name!r} (ids {ids}): rename all but one"
        )
    return found[0] if found else None


def ensure_project(client: Client, name: str) -> dict:
    """The project ``name``, created with our config, or checked to be ours (its config brought up to date).

    Raises:
        ForeignProjectError: a project of that name exists with another tool's config.
    """
    found = find_project(client, name)
    if found is None:
        log.info("creating Label Studio project %r", name)
        return client.call("POST", "/api/projects", {"title": name, "label_config": lsp.label_config()})
    if not lsp.check_config(found):
        log.info("updating the labelling config of project %r", name)
        client.call("PATCH", f"/api/projects/{found['id']}", {"label_config": lsp.label_config()})
    return found


def image_url(uri: str, document_root: Path | None, s3: S3Options) -> tuple[str, str | None]:
    """(URL the task names, local folder to serve or None) of an image uri.

    Raises:
        ImageNotServable: a local file outside the document root, or no document root.
    """
    if is_s3(uri):
        try:
            return s3.presign(uri, PRESIGN_EXPIRES_S), None
        except StorageError as e:
            raise ImageNotServable(str(e)) from e
    try:
        path = Path(filepath(uri, None))
    except ValueError as e:
        raise ImageNotServable(str(e)) from e
    if document_root is None:
        raise ImageNotServable(
            f"local image {path} needs Label Studio's local-files serving: pass --document-root "
            f"(the server's {DOCUMENT_ROOT_ENV})"
        )
    try:
        rel = path.relative_to(document_root)
    except ValueError:
        raise ImageNotServable(f"{path} is outside the document root {document_root} Label Studio serves") from None
    return LOCAL_FILES + quote(rel.as_posix(), safe="/"), str(path.parent)


def ensure_storages(client: Client, project_id: int, folders: set[str]) -> None:
    """A local-files storage (never synced) per image folder, so Label Studio serves the files."""
    have = client.call("GET", f"/api/storages/localfiles?project={project_id}") or []
    known = {s.get("path") for s in have}
    for folder in sorted(folders - known):
        client.call(
            "POST",
            "/api/storages/localfiles",
            {"project": project_id, "path": folder, "title": "m2fp-batch images", "use_blob_urls": False},
        )


def _task(row: dict[str, Any], url: str, low_score: float, view: str | None) -> dict | None:
    """The task data of an ok row and the row itself, or None when the row is outside ``view``."""
    persons = decode_persons(row)
    sig = review_signals(row, persons, low_score)
    if not in_view(view, sig):
        return None
    data = {
        lsp.IMAGE: url,
        "image_id": row["image_id"],
        "uri": row["uri"],
        "review_priority": round(sig.fields["review_priority"], 6),
        "review_reasons": ", ".join(sig.fields["review_reasons"]),
        "skin_groups": ", ".join(sig.fields["skin_groups"] or []),
        "persons": len(persons),
    }
    data["m2fp_sha"] = lsp.task_fingerprint(row, data if not is_s3(row["uri"]) else {**data, lsp.IMAGE: row["uri"]})
    return {"data": data, "row": row, "score": sig.fields["min_person_score"]}


def prediction(row: dict[str, Any], persons: list | None = None, score: float | None = None) -> dict:
    """A row's Label Studio prediction: ``{model_version, score, result}`` (regions in :mod:`.project`'s
    conventions; ``score``: the row's lowest person score, unless given). ``push`` imports it with the
    task; the ML backend (``serve``, ``/ls/predict``) answers it."""
    persons = decode_persons(row) if persons is None else persons
    if score is None:
        score = min((p.score for p in persons), default=None)  # review_signals' min_person_score
    result = lsp.prediction_result(persons, (int(row["height"]), int(row["width"])))
    return {"model_version": lsp.model_version(row), "score": score, "result": result}


def _with_prediction(task: dict) -> dict:
    """The task as Label Studio imports it: data and our prediction (masks encoded only for what is sent)."""
    return {"data": task["data"], "predictions": [prediction(task["row"], score=task["score"])]}


def _served(client: Client, url: str, seen: dict[str, bool]) -> bool:
    """Whether Label Studio serves ``url`` (local files are fetched once per push; presigned URLs are not)."""
    if url not in seen:
        seen[url] = not url.startswith(LOCAL_FILES) or client.status(url) in SERVED
    return seen[url]


def _collect(
    out: str, summary: PushSummary, document_root: Path | None, view: str | None, low_score: float
) -> tuple[list[dict], set[str]]:
    """The task of every pushable row (queue order), and the folders to serve."""
    s3 = S3Options.from_env()
    tasks, folders = [], set()
    for _, row in open_labels(out).iter_rows():
        summary.rows += 1
        if row["status"] != STATUS_OK:
            summary.skipped_errors += 1
            continue
        if is_frame(row):  # its uri is the video: a task would show a broken image
            summary.skipped_frames += 1
            continue
        try:
            url, folder = image_url(row["uri"], document_root, s3)
        except ImageNotServable as e:
            summary.image_errors.append({"image_id": row["image_id"], "uri": row["uri"], "error": str(e)})
            continue
        task = _task(row, url, low_score, view)
        if task is None:
            summary.filtered += 1
            continue
        if folder is not None:
            folders.add(folder)
        tasks.append(task)
    tasks.sort(key=lambda t: (-t["data"]["review_priority"], t["data"]["image_id"]))
    return tasks, folders


def _update(client: Client, existing: dict, task: dict) -> None:
    """Patch an existing task's data and replace our prediction."""
    client.call("PATCH", f"/api/tasks/{existing['id']}", {"data": task["data"]})
    for pred in existing.get("predictions") or []:
        client.call("DELETE", f"/api/predictions/{pred['id']}")
    client.call("POST", "/api/predictions", {"task": existing["id"], **_with_prediction(task)["predictions"][0]})


def push(
    client: Client,
    out: str,
    project_name: str,
    *,
    document_root: str | Path | None = None,
    view: str | None = None,
    low_score: float = DEFAULT_LOW_SCORE,
) -> PushSummary:
    """Create or update the project ``project_name`` from the job output ``out`` (see the module doc).

    Raises:
        LabelsError: ``out`` is not a job output; LabelStudioError (and subclasses): the server
        cannot be reached, refuses the token, or the project is another tool's.
    """
    t0 = time.perf_counter()
    root = Path(document_root).resolve() if document_root else None
    summary = PushSummary(project=project_name)
    proj = ensure_project(client, project_name)
    summary.project_id = pid = int(proj["id"])
    tasks, folders = _collect(out, summary, root, view, low_score)
    ensure_storages(client, pid, folders)
    existing = {t["data"].get("image_id"): t for t in client.tasks(pid)}
    new, served = [], {}
    for task in tasks:
        data = task["data"]
        if not _served(client, data[lsp.IMAGE], served):
            error = f"Label Studio at {client.url} cannot serve {data['uri']} ({data[lsp.IMAGE]})"
            summary.image_errors.append({"image_id": data["image_id"], "uri": data["uri"], "error": error})
            continue
        old = existing.get(data["image_id"])
        if old is None:
            new.append(_with_prediction(task))
        elif (old.get("data") or {}).get("m2fp_sha") == data["m2fp_sha"]:
            summary.unchanged += 1
        else:
            _update(client, old, task)
            summary.updated += 1
    for k in range(0, len(new), IMPORT_BATCH):
        client.call("POST", f"/api/projects/{pid}/import", new[k : k + IMPORT_BATCH])
    summary.created = len(new)
    summary.seconds = round(time.perf_counter() - t0, 3)
    log.info("label-studio push: %s", {k: v for k, v in summary.to_dict().items() if k != "image_errors"})
    return summary


def default_document_root() -> str | None:
    """The document root from the environment (the variable the server reads), if set."""
    return os.environ.get(DOCUMENT_ROOT_ENV) or None
