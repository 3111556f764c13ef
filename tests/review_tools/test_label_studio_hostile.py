"""Hostile cases against the REAL Label Studio: each ends in one sentence (exit 2) or an error row, never a traceback."""

from __future__ import annotations

import json
import shutil

import pytest

from m2fp_batch.labelstudio import project as lsp

from .server import free_port
from .test_label_studio import cli, project_tasks, pull, push, sdk

# the first test of the package starts Label Studio (~55 s on its first start) and runs a job
pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(1200)]


def one_sentence(done, *words: str) -> None:
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    for w in words:
        assert w in err[0], err[0]


def test_wrong_url(job_output, label_studio, ls_env):
    done = cli(
        "label-studio",
        "push",
        str(job_output),
        "--url",
        f"http://127.0.0.1:{free_port()}",
        "--project",
        "x y z",
        env=ls_env,
    )
    one_sentence(done, "cannot reach Label Studio")
    done = cli("label-studio", "push", str(job_output), "--url", "ftp://example", "--project", "x y z", env=ls_env)
    one_sentence(done, "not an http(s) URL")


def test_wrong_or_missing_token(job_output, label_studio, ls_env, tmp_path):
    env = {**ls_env, "LABEL_STUDIO_API_KEY": "0123456789abcdef"}
    one_sentence(push(job_output, label_studio, env), "refused the token")
    one_sentence(pull(job_output, label_studio, env, tmp_path / "r"), "refused the token")
    env = {k: v for k, v in ls_env.items() if k != "LABEL_STUDIO_API_KEY"}
    done = push(job_output, label_studio, env)
    one_sentence(done, "LABEL_STUDIO_API_KEY")
    assert label_studio.token not in done.stderr


def test_project_of_another_tool(job_output, label_studio, ls_env, tmp_path):
    client = sdk(label_studio)
    config = '<View><Image name="img" value="$img"/><RectangleLabels name="box" toName="img"><Label value="Car"/></RectangleLabels></View>'
    client.projects.create(title="someone else's boxes", label_config=config)
    one_sentence(push(job_output, label_studio, ls_env, project="someone else's boxes"), "not made by m2fp-batch")
    one_sentence(
        pull(job_output, label_studio, ls_env, tmp_path / "r", project="someone else's boxes"), "not made by m2fp-batch"
    )
    one_sentence(pull(job_output, label_studio, ls_env, tmp_path / "r", project="never pushed"), "no project")


def test_image_label_studio_cannot_serve(job_output, label_studio, ls_env, tmp_path):
    """An image outside the document root, and one gone from disk: error rows; the other rows are pushed."""
    images = label_studio.document_root / "images"
    victim = images / "coffee.jpg"
    hidden = tmp_path / "coffee.jpg"
    shutil.move(victim, hidden)
    try:
        done = push(job_output, label_studio, ls_env, project="m2fp unservable")
    finally:
        shutil.move(hidden, victim)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["created"] == 2 and [e["uri"] for e in summary["image_errors"]] == [str(victim)]
    assert "cannot serve" in summary["image_errors"][0]["error"]
    elsewhere = tmp_path / "other_root"
    elsewhere.mkdir()
    done = push(job_output, label_studio, ls_env, "--document-root", str(elsewhere), project="m2fp outside root")
    summary = json.loads(done.stdout)
    assert done.returncode == 1 and summary["created"] == 0 and len(summary["image_errors"]) == 3
    assert all("outside the document root" in e["error"] for e in summary["image_errors"])


def test_annotation_with_unknown_label(job_output, label_studio, ls_env, tmp_path):
    """A region labelled with a class we do not have: that row keeps the job's labels and is listed; no row is lost."""
    assert push(job_output, label_studio, ls_env, project="m2fp unknown label").returncode == 0
    client = sdk(label_studio)
    task = project_tasks(client, "m2fp unknown label")[0]
    result = [dict(r) for r in task["predictions"][0]["result"]] or [
        {"id": "x", "from_name": lsp.CONTROL, "to_name": lsp.IMAGE, "type": "brushlabels", "value": {}}
    ]
    result[0] = {**result[0], "value": {**result[0].get("value", {}), "brushlabels": ["Tail"]}}
    client.annotations.create(id=task["id"], result=result)
    done = pull(job_output, label_studio, ls_env, tmp_path / "r", project="m2fp unknown label")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert [e["image_id"] for e in summary["errors"]] == [task["data"]["image_id"]]
    assert "Tail" in summary["errors"][0]["error"]
    assert summary["rows"] == 4 and summary["by_status"]["unreviewed"] == 3


def test_token_env_and_no_token_in_logs(job_output, label_studio, ls_env):
    """--token-env names the variable; with -v (debug logging) the token still appears nowhere."""
    env = {k: v for k, v in ls_env.items() if k != "LABEL_STUDIO_API_KEY"}
    env["MY_LS_TOKEN"] = label_studio.token
    args = [
        "--url",
        label_studio.url,
        "--project",
        "m2fp token env",
        "--token-env",
        "MY_LS_TOKEN",
        "--view",
        "review-queue",
    ]
    done = cli("-v", "label-studio", "push", str(job_output), *args, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["created"] == 3
    assert label_studio.token not in done.stdout + done.stderr
