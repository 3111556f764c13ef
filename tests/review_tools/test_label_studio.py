"""Label Studio round trip against a REAL server (1.23.2, own venv), driven by label-studio-sdk as a reviewer.

push -> a reviewer fixes one part of one person and rejects another task through the API -> pull:
the fixed mask arrives pixel-exact, every untouched mask equals the job's auto-label pixel-exact,
the rejected task is excluded from training; pushing and pulling twice duplicates nothing.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from m2fp_batch.annotate import ls_rle
from m2fp_batch.labels import decode_mask, decode_persons, open_labels, semantic_map
from m2fp_batch.labelstudio import project as lsp

from .server import USER

# the first test of the package starts Label Studio (~55 s on its first start) and runs a job
pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
PROJECT = "m2fp round trip"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``m2fp-batch ARGS`` in a subprocess with exactly ``env`` (default: this process's environment)."""
    cmd = [sys.executable, "-m", "m2fp_batch.cli", *args]
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)


def push(out: Path, server, env, *extra: str, project: str = PROJECT) -> subprocess.CompletedProcess:
    return cli("label-studio", "push", str(out), "--url", server.url, "--project", project, *extra, env=env)


def pull(out: Path, server, env, dest: Path, *extra: str, project: str = PROJECT) -> subprocess.CompletedProcess:
    args = ["label-studio", "pull", str(out), "--url", server.url, "--project", project, "--out", str(dest)]
    return cli(*args, *extra, env=env)


def sdk(server):
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=server.url, api_key=server.token)


def project_tasks(client, title: str) -> list:
    """The project's tasks as plain dicts (the SDK's models dumped), in id order."""
    (proj,) = [p for p in client.projects.list() if p.title == title]
    tasks = [t.model_dump() for t in client.tasks.list(project=proj.id, fields="all")]
    return sorted(tasks, key=lambda t: t["id"])


def job_rows(out: Path) -> dict[str, dict]:
    return {r["image_id"]: r for _, r in open_labels(out).iter_rows()}


def _edit(mask: np.ndarray, person: np.ndarray) -> np.ndarray:
    """A reviewer's fix: drop the part's top half, add a 6x6 block of the person elsewhere."""
    out = mask.copy()
    rows = np.flatnonzero(mask.any(axis=1))
    out[: rows[0] + (rows[-1] - rows[0] + 1) // 2] = False
    ys, xs = np.nonzero(person & ~mask)
    out[ys[0] : ys[0] + 6, xs[0] : xs[0] + 6] = True
    assert not np.array_equal(out, mask)
    return out


def _region(result: list[dict], rid: str) -> dict:
    (r,) = [r for r in result if r["id"] == rid]
    return r


def _verdict(value: str) -> dict:
    return {
        "id": "verdict",
        "from_name": lsp.VERDICT,
        "to_name": lsp.IMAGE,
        "type": "choices",
        "value": {"choices": [value]},
    }


def test_push_review_pull(job_output, label_studio, ls_env, tmp_path):
    rows = job_rows(job_output)
    ok = {i: r for i, r in rows.items() if r["status"] == "ok"}
    assert len(ok) == 3 and len(rows) == 4

    first = push(job_output, label_studio, ls_env)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads(first.stdout)
    assert (summary["created"], summary["skipped_errors"], summary["image_errors"]) == (3, 1, [])
    assert label_studio.token not in first.stdout + first.stderr

    client = sdk(label_studio)
    tasks = project_tasks(client, PROJECT)
    assert sorted(t["data"]["image_id"] for t in tasks) == sorted(ok)
    priorities = [t["data"]["review_priority"] for t in tasks]
    assert priorities == sorted(priorities, reverse=True), "tasks are created in the review queue's order"
    for t in tasks:
        assert len(t["predictions"]) == 1
        pred = t["predictions"][0]
        assert pred["model_version"] == lsp.model_version(ok[t["data"]["image_id"]])
        req = urllib.request.Request(
            label_studio.url + t["data"]["image"], headers={"Authorization": f"Token {label_studio.token}"}
        )
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - the test's loopback server
            assert r.status == 200 and len(r.read()) > 1000, "Label Studio serves the image"
        # the predictions hold the job's masks, pixel-exact
        row = ok[t["data"]["image_id"]]
        shape = (row["height"], row["width"])
        for p in decode_persons(row):
            got = ls_rle.decode(_region(pred["result"], lsp.region_id(p.index))["value"]["rle"], shape)
            assert np.array_equal(got, p.mask)
            for lid, m in zip(p.part_ids, p.part_masks, strict=True):
                got = ls_rle.decode(_region(pred["result"], lsp.region_id(p.index, lid))["value"]["rle"], shape)
                assert np.array_equal(got, m)

    # the reviewer: fixes one part of one person in one task, rejects a second task, leaves the third
    fixed_task = next(t for t in tasks if any(p.part_ids for p in decode_persons(ok[t["data"]["image_id"]])))
    rejected_task = next(t for t in tasks if t["id"] != fixed_task["id"])
    fixed_row = ok[fixed_task["data"]["image_id"]]
    person = next(p for p in decode_persons(fixed_row) if p.part_ids)
    label_id = person.part_ids[0]
    shape = (fixed_row["height"], fixed_row["width"])
    new_mask = _edit(person.part_masks[0], person.mask)
    result = copy.deepcopy(fixed_task["predictions"][0]["result"])
    region = _region(result, lsp.region_id(person.index, label_id))
    region["value"]["rle"] = ls_rle.encode(new_mask)
    region.pop("score", None)
    client.annotations.create(id=fixed_task["id"], result=[*result, _verdict(lsp.VERDICT_APPROVED)])
    client.annotations.create(id=rejected_task["id"], result=[_verdict(lsp.VERDICT_REJECTED)])

    reviewed = tmp_path / "reviewed"
    got = pull(job_output, label_studio, ls_env, reviewed)
    assert got.returncode == 0, got.stderr[-3000:]
    pulled = json.loads(got.stdout)
    assert pulled["by_status"] == {"reviewed": 1, "rejected": 1, "unreviewed": 1, "not_in_dataset": 1}
    assert pulled["edited"] == 1 and pulled["errors"] == []

    source = open_labels(reviewed)
    assert source.kind == "export-reviewed"
    out = {r["image_id"]: r for _, r in source.iter_rows()}
    assert sorted(out) == sorted(rows)
    fixed = out[fixed_task["data"]["image_id"]]
    assert (fixed["review_status"], fixed["review_edited"], fixed["review_by"]) == ("reviewed", True, USER)
    assert fixed["review_time"]
    _check_fixed(fixed, fixed_row, person.index, label_id, new_mask, shape)
    rejected = out[rejected_task["data"]["image_id"]]
    assert (rejected["review_status"], rejected["review_by"]) == ("rejected", USER)
    for iid, r in out.items():
        if iid != fixed["image_id"]:
            assert r["persons"] == rows[iid]["persons"] and r["semantic"] == rows[iid]["semantic"]

    _check_consumers(
        reviewed,
        tmp_path,
        ls_env,
        trainable={fixed["image_id"], *(set(ok) - {fixed["image_id"], rejected["image_id"]})},
    )
    _check_twice(job_output, label_studio, ls_env, reviewed, tmp_path, client)


def _check_fixed(fixed: dict, job_row: dict, person_index: int, label_id: int, new_mask, shape) -> None:
    """The fixed part is the reviewer's mask; every other mask is the job's, pixel-exact."""
    for k, (p, q) in enumerate(zip(fixed["persons"], job_row["persons"], strict=True)):
        if k != person_index:
            assert p == q
            continue
        old_parts = np.logical_or.reduce([decode_mask(x["mask"]) for x in q["parts"]])
        assert np.array_equal(decode_mask(p["mask"]), decode_mask(q["mask"]) | (new_mask & ~old_parts))
        parts = {x["label_id"]: x for x in p["parts"]}
        assert sorted(parts) == sorted(x["label_id"] for x in q["parts"])
        for old in q["parts"]:
            new = parts[old["label_id"]]
            if old["label_id"] == label_id:
                assert np.array_equal(decode_mask(new["mask"]), new_mask) and new["score"] is None
            else:
                assert np.array_equal(decode_mask(new["mask"]), decode_mask(old["mask"]))
                assert new["score"] == old["score"]
    sem = semantic_map(fixed)
    assert (sem[new_mask] == label_id).all(), "the image-level map follows the fix"


def _check_consumers(reviewed: Path, tmp_path: Path, env, trainable: set[str]) -> None:
    """ParsingDataset and export read the pulled dir unchanged; the rejected row is left out."""
    from m2fp_batch.data.dataset import ParsingDataset

    assert set(ParsingDataset(reviewed).image_ids) == trainable
    done = cli("export", str(reviewed), "--format", "cihp", "--out", str(tmp_path / "cihp"), env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["images"] == len(trainable) and json.loads(done.stdout)["skipped_rejected"] == 1


def _check_twice(job_output, server, env, reviewed: Path, tmp_path: Path, client) -> None:
    """A second push updates nothing and creates nothing; a second pull writes the same files."""
    before = {p.name: p.read_bytes() for p in sorted(reviewed.iterdir())}
    again = push(job_output, server, env)
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads(again.stdout)
    assert (summary["created"], summary["updated"], summary["unchanged"]) == (0, 0, 3)
    tasks = project_tasks(client, PROJECT)
    assert len(tasks) == 3 and all(len(t["predictions"]) == 1 for t in tasks)
    assert sum(len(t["annotations"]) for t in tasks) == 2
    got = pull(job_output, server, env, reviewed)
    assert got.returncode == 0, got.stderr[-3000:]
    after = {p.name: p.read_bytes() for p in sorted(reviewed.iterdir())}
    assert after.keys() == before.keys()
    for name in before:
        if name.endswith(".parquet"):
            assert pq.read_table(reviewed / name).equals(pq.read_table(_tmp_copy(before[name], tmp_path / name)))
        else:
            assert after[name] == before[name]
    dropped = tmp_path / "dropped"
    got = pull(job_output, server, env, dropped, "--unannotated", "drop")
    assert got.returncode == 0, got.stderr[-3000:]
    assert json.loads(got.stdout)["by_status"] == {"reviewed": 1, "rejected": 1}


def _tmp_copy(data: bytes, path: Path) -> Path:
    path.write_bytes(data)
    return path
