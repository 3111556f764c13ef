"""``label-studio pull``: the reviewers' annotations back into the reviewed layout (:mod:`m2fp_batch.reviewed`).

For every row of the job output, the task with its ``image_id`` decides (``review_status``):

* the task's latest annotation (by update time, then id) is the verdict. Skipped (cancelled) or
  with the ``rejected`` verdict: ``rejected``, the job's labels kept. Otherwise ``reviewed``: the
  people and parts are rebuilt from its brush regions (conventions in :mod:`.project`),
  ``review_edited`` says whether they differ from the job's, ``review_by`` / ``review_time``
  are the annotation's author and update time;
* a task without an annotation: ``unreviewed``; a row without a task (an error row, outside the
  pushed ``--view``, or an image Label Studio could not serve): ``not_in_dataset``. Both keep the
  job's labels (``--unannotated keep``, the default) or are left out (``--unannotated drop``);
* an annotation that cannot be read (a label that is not ours, a mask of another size, a broken
  RLE) keeps the job's labels as ``unreviewed`` and is listed in the summary's ``errors``.

The output is a function of the job output and the project's annotations: pulling twice writes the
same files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from m2fp_batch.annotate import ls_rle
from m2fp_batch.labels import decode_mask, open_labels
from m2fp_batch.labelstudio import project as lsp
from m2fp_batch.labelstudio.client import Client, LabelStudioError
from m2fp_batch.labelstudio.push import find_project
from m2fp_batch.reviewed import (
    ReviewedSummary,
    ReviewRowError,
    build_person,
    check_destination,
    finish_row,
    person_mask,
    review_source,
)
from m2fp_batch.schema import NOT_IN_DATASET, REJECTED, REVIEWED, STATUS_OK, UNREVIEWED

__all__ = ["AnnotationError", "annotation_persons", "pull", "reviewed_row"]

log = logging.getLogger(__name__)


class AnnotationError(ReviewRowError):
    """One annotation cannot be read (becomes an entry of the summary's ``errors``)."""


def _regions(result: list[dict], shape: tuple[int, int]) -> list[tuple[str, int, np.ndarray]]:
    """(region id, label id, mask) of our brush regions of an annotation result."""
    out = []
    for r in result:
        if r.get("type") != "brushlabels" or r.get("from_name") != lsp.CONTROL:
            continue
        value = r.get("value") or {}
        names = value.get("brushlabels") or []
        if len(names) != 1 or names[0] not in lsp.LABELS:
            raise AnnotationError(f"region {r.get('id')!r} has label(s) {names}, not one of the project's 20 labels")
        size = (r.get("original_height"), r.get("original_width"))
        if size != shape:
            raise AnnotationError(f"region {r.get('id')!r} is {size[1]}x{size[0]}, the image {shape[1]}x{shape[0]}")
        try:
            mask = ls_rle.decode(value.get("rle") or [], shape)
        except ls_rle.LSRLEError as e:
            raise AnnotationError(f"region {r.get('id')!r}: {e}") from e
        out.append((str(r.get("id")), lsp.label_id_of(names[0]), mask))
    return out


def _owner(rid: str, mask: np.ndarray, humans: dict[str, np.ndarray]) -> str | None:
    """The Human region a part region belongs to: by our id, else by the most overlap; None: none overlaps."""
    parsed = lsp.parse_region_id(rid)
    if parsed is not None and lsp.region_id(parsed[0]) in humans:
        return lsp.region_id(parsed[0])
    overlap = {h: int((m & mask).sum()) for h, m in humans.items()}
    best = max(overlap, key=overlap.get, default=None)
    return best if best is not None and overlap[best] > 0 else None


def _old_person(hid: str, row: Mapping[str, Any]) -> dict | None:
    parsed = lsp.parse_region_id(hid)
    persons = row.get("persons") or []
    if parsed is None or parsed[1] is not None or parsed[0] >= len(persons):
        return None
    return persons[parsed[0]]


def annotation_persons(row: Mapping[str, Any], result: list[dict]) -> list[dict]:
    """The ``persons`` of a row as an annotation's brush regions draw them.

    Raises:
        AnnotationError: a region with an unknown label, a mask of another size or a broken RLE.
    """
    shape = (int(row["height"]), int(row["width"]))
    regions = _regions(result, shape)
    humans = {rid: m for rid, lid, m in regions if lid == lsp.label_id_of(lsp.HUMAN)}
    order = sorted(humans, key=lambda h: (lsp.parse_region_id(h) is None, (lsp.parse_region_id(h) or (0,))[0]))
    parts: dict[str | None, dict[int, np.ndarray]] = {h: {} for h in order}
    for rid, lid, m in regions:
        if lid == lsp.label_id_of(lsp.HUMAN):
            continue
        owned = parts.setdefault(_owner(rid, m, humans), {})
        owned[lid] = owned[lid] | m if lid in owned else m
    persons = []
    version = int(row["schema_version"])
    for hid in [*order, None] if None in parts else order:
        old = None if hid is None else _old_person(hid, row)
        old_parts = [decode_mask(q["mask"]) for q in (old or {}).get("parts") or []]
        human = humans.get(hid, np.zeros(shape, bool))
        full = person_mask(human, old_parts, parts[hid].values()) | human  # the Human region is drawn: kept
        persons.append(build_person(old, full, parts[hid], person_id=len(persons), score=None, schema_version=version))
    return persons


def _latest(task: Mapping[str, Any]) -> dict | None:
    annotations = task.get("annotations") or []
    return max(annotations, key=lambda a: (str(a.get("updated_at") or ""), int(a.get("id") or 0)), default=None)


def _verdict(annotation: Mapping[str, Any]) -> str | None:
    for r in annotation.get("result") or []:
        if r.get("from_name") == lsp.VERDICT and r.get("type") == "choices":
            choices = (r.get("value") or {}).get("choices") or []
            return choices[0] if choices else None
    return None


def _author(annotation: Mapping[str, Any], users: Mapping[int, str]) -> str | None:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        return who.get("email") or who.get("username")
    return users.get(int(who)) if isinstance(who, int) else None


def reviewed_row(row: dict, task: Mapping[str, Any] | None, users: Mapping[int, str]) -> dict:
    """The output row of one job row and its task (see the module doc).

    Raises:
        AnnotationError: the task's annotation cannot be read.
    """
    if task is None or row["status"] != STATUS_OK:
        return finish_row(row, NOT_IN_DATASET)
    annotation = _latest(task)
    if annotation is None:
        return finish_row(row, UNREVIEWED)
    by, when = _author(annotation, users), annotation.get("updated_at")
    if annotation.get("was_cancelled") or _verdict(annotation) == lsp.VERDICT_REJECTED:
        return finish_row(row, REJECTED, by=by, time=when)
    return finish_row(row, REVIEWED, annotation_persons(row, annotation.get("result") or []), by=by, time=when)


def pull(
    client: Client,
    labels: str,
    project_name: str,
    dest: str | Path,
    *,
    unannotated: str = "keep",
    rows_per_file: int = 5000,
) -> ReviewedSummary:
    """Write the reviewed layout of project ``project_name`` over the job output ``labels`` into ``dest``.

    Raises:
        LabelStudioError: no such project, unreachable server, refused token; ForeignProjectError:
        the project is another tool's; LabelsError: ``labels`` is not a job output.
    """
    t0 = time.perf_counter()
    proj = find_project(client, project_name)
    if proj is None:
        raise LabelStudioError(f"Label Studio at {client.url} has no project {project_name!r}: push first")
    lsp.check_config(proj)
    source = open_labels(labels)
    dest = Path(dest).expanduser().resolve()
    check_destination(dest, source)
    summary = ReviewedSummary(source=str(labels), dest=str(dest))
    users = client.users()
    tasks: dict[str, dict] = {}
    for task in client.tasks(int(proj["id"])):
        iid = (task.get("data") or {}).get("image_id")
        if iid is not None and (iid not in tasks or _latest(task) is not None):
            tasks[iid] = task
    summary.details = {"project": project_name, "project_id": int(proj["id"]), "tasks": len(tasks)}

    def review_row(row: dict) -> dict:
        task = tasks.get(row["image_id"])
        try:
            return reviewed_row(row, task, users)
        except AnnotationError as e:
            raise AnnotationError(f"task {task['id']}: {e}") from e

    meta = {"label_studio": client.url, "project": project_name, "source": str(labels)}
    review_source(source, dest, review_row, meta, unannotated=unannotated, rows_per_file=rows_per_file, summary=summary)
    summary.seconds = round(time.perf_counter() - t0, 3)
    log.info("label-studio pull: %s", {k: v for k, v in summary.to_dict().items() if k != "errors"})
    return summary
