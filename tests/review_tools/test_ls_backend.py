"""The Label Studio ML backend of ``m2fp-batch serve`` against a REAL Label Studio 1.23.2 (own venv) and a
REAL service (tiny seeded model, basic auth): ``label-studio connect``; a photo uploaded into Label Studio
gets its prediction through Label Studio's own ``retrieve_tasks_predictions``, pixel-exact with
``/api/parse``; an annotation made through Label Studio's REST API reaches ``/webhook`` and lands in
``--reviewed-out``, which ``ParsingDataset`` reads; hostile cases answer a clear message, never a 500.

Label Studio runs with ``USE_DEFAULT_BANNED_SUBNETS=false`` (else it refuses a loopback backend).
The tests run in order and share the server, the project and its task.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from m2fp_batch.annotate import ls_rle
from m2fp_batch.annotate.palette import CIHP_CLASSES
from m2fp_batch.labels import decode_mask
from m2fp_batch.labels.layout import EXPORT_FILE
from m2fp_batch.labelstudio import project as lsp
from m2fp_batch.labelstudio.client import Client

from .server import LabelStudioServer

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from serve.conftest import multipart, request, serving  # noqa: E402

PROJECT = "m2fp ml backend"
AUTH_ENV = "M2FP_TEST_LS_AUTH"
AUTH = ("m2fp", "backend-secret-7q")
QUEUE = 2  # capacity = queue + 4 in-flight: 20 concurrent /predict calls go over it


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def ls(tmp_path_factory):
    """One Label Studio for this module, which accepts a backend on loopback."""
    root = tmp_path_factory.mktemp("ls_backend")
    docs = root / "files"
    docs.mkdir()
    server = LabelStudioServer(root / "label_studio", docs, {"USE_DEFAULT_BANNED_SUBNETS": "false"}).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def backend(tiny_model_dir, tmp_path_factory):
    """``m2fp-batch serve`` with the ML backend: basic auth, --reviewed-out, a small queue; no LS variables."""
    out = tmp_path_factory.mktemp("reviewed_out") / "reviewed"
    extra = ("--reviewed-out", str(out), "--ls-auth-env", AUTH_ENV, "--queue", str(QUEUE))
    env = {AUTH_ENV: ":".join(AUTH), "LABEL_STUDIO_URL": None, "LABEL_STUDIO_API_KEY": None}
    with serving(tiny_model_dir, extra, env) as srv:
        srv.reviewed = out
        yield srv


@pytest.fixture(scope="module")
def state() -> dict:
    return {}


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "m2fp_batch.cli", *args]
    env = {**env, "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)


def ls_post(backend, route: str, body: dict, auth: tuple[str, str] | None = AUTH, timeout: float = 120):
    """POST JSON to the backend's ``/ls/<route>``: (status, headers, decoded JSON)."""
    headers = {"Content-Type": "application/json", **(_basic(*auth) if auth else {})}
    status, h, raw = request(backend.url + "ls/" + route, json.dumps(body).encode(), headers, timeout)
    return status, h, json.loads(raw)


def upload(ls_server, project_id: int, name: str, data: bytes) -> dict:
    """Upload a photo into the project as a new task (Label Studio's import); the task."""
    body, ctype = multipart({"file": (name, data)})
    headers = {"Content-Type": ctype, "Authorization": f"Token {ls_server.token}"}
    url = f"{ls_server.url}/api/projects/{project_id}/import?return_task_ids=true"
    status, _, raw = request(url, body, headers, 120)
    assert status == 201, raw[:500]
    (task_id,) = json.loads(raw)["task_ids"]
    return Client(ls_server.url, ls_server.token).call("GET", f"/api/tasks/{task_id}")


def photo_bytes() -> bytes:
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def test_connect_registers_the_backend(ls, backend, state):
    env = {**os.environ, "LABEL_STUDIO_API_KEY": ls.token, AUTH_ENV: ":".join(AUTH)}
    args = ["label-studio", "connect", "--url", ls.url, "--project", PROJECT, "--backend", backend.url + "ls"]
    done = cli(*args, "--ls-auth-env", AUTH_ENV, env=env)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["state"] == "connected" and summary["error"] is None, summary
    assert summary["created"] is True and "ckpt:" in summary["model_version"]
    assert ls.token not in done.stdout + done.stderr and AUTH[1] not in done.stdout + done.stderr
    client = Client(ls.url, ls.token)
    (ml,) = client.call("GET", f"/api/ml?project={summary['project_id']}")
    assert ml["is_interactive"] is True and ml["auth_method"] == "BASIC_AUTH"
    again = cli(*args, "--ls-auth-env", AUTH_ENV, env=env)
    assert again.returncode == 0 and json.loads(again.stdout)["created"] is False  # updated, not duplicated
    assert len(client.call("GET", f"/api/ml?project={summary['project_id']}")) == 1
    state.update(project_id=summary["project_id"], model_version=summary["model_version"])
    assert AUTH[1] not in backend.log.read_text() and ls.token not in backend.log.read_text()


def test_uploaded_photo_is_predicted_pixel_exact_with_api_parse(ls, backend, state):
    pid = state["project_id"]
    task = upload(ls, pid, "astronaut.jpg", photo_bytes())
    assert task["data"][lsp.IMAGE].startswith("/data/upload/")
    client = Client(ls.url, ls.token)
    action = f"/api/dm/actions?id=retrieve_tasks_predictions&project={pid}"
    client.call("POST", action, {"selectedItems": {"all": False, "included": [task["id"]]}})
    (pred,) = client.call("GET", f"/api/predictions?task={task['id']}")
    assert pred["model_version"] == state["model_version"]

    req = urllib.request.Request(ls.url + task["data"][lsp.IMAGE], headers={"Authorization": f"Token {ls.token}"})
    with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310 - the test's loopback server
        stored = r.read()
    status, _, raw = backend.post(stored, name="astronaut.jpg")
    assert status == 200, raw[:300]
    parsed = json.loads(raw)
    assert parsed["persons"], "the tiny model finds people on the astronaut"
    assert pred["model_version"] == lsp.model_version(parsed["model"])
    assert pred["score"] == pytest.approx(min(p["score"] for p in parsed["persons"]))
    shape = (parsed["height"], parsed["width"])
    regions = {r["id"]: r for r in pred["result"]}
    expected = sum(1 + len(p["parts"]) for p in parsed["persons"])
    assert len(regions) == expected
    for k, p in enumerate(parsed["persons"]):
        human = regions[lsp.region_id(k)]
        assert human["value"]["brushlabels"] == [lsp.HUMAN]
        assert np.array_equal(ls_rle.decode(human["value"]["rle"], shape), decode_mask(p["mask"]))
        for q in p["parts"]:
            r = regions[lsp.region_id(k, q["label_id"])]
            assert r["value"]["brushlabels"] == [CIHP_CLASSES[q["label_id"]]]
            assert np.array_equal(ls_rle.decode(r["value"]["rle"], shape), decode_mask(q["mask"]))
    state.update(task=task, prediction=pred, parsed=parsed, shape=shape, photo=stored)


def _reviewed_rows(out: Path) -> dict:
    """Task id -> its row in --reviewed-out (as listed by _export.json)."""
    listed = json.loads((out / EXPORT_FILE).read_text())["files"]
    rows = {}
    for name in listed:
        (row,) = pq.read_table(out / name).to_pylist()
        rows[row["label_studio_task"]] = row
    return rows


def _wait_for(out: Path, check, timeout: float = 240) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if (out / EXPORT_FILE).exists():
            rows = _reviewed_rows(out)
            if check(rows):
                return rows
        time.sleep(1.0)
    raise AssertionError(f"--reviewed-out never reached the expected state: {(out / EXPORT_FILE).read_text()}")


def _annotation(state: dict) -> tuple[list[dict], int, np.ndarray, int]:
    """The prediction with one part of person 0 moved to a new block and a Hat added: (result, person, hat, lid)."""
    result = copy.deepcopy(state["prediction"]["result"])
    shape = state["shape"]
    person = decode_mask(state["parsed"]["persons"][0]["mask"])
    ys, xs = np.nonzero(person)
    hat = np.zeros(shape, bool)
    hat[ys[0] : ys[0] + 5, xs[0] : xs[0] + 5] = True
    hat &= person
    hat_id = CIHP_CLASSES.index("Hat")
    for r in result:
        r.pop("score", None)
        parsed = lsp.parse_region_id(r["id"])
        if parsed is not None and parsed[0] == 0 and parsed[1] is not None:  # the Hat's pixels leave other parts
            r["value"]["rle"] = ls_rle.encode(ls_rle.decode(r["value"]["rle"], shape) & ~hat)
    region = lsp.brush_region(lsp.region_id(0, hat_id), "Hat", hat, shape, None)
    return [r for r in result if r["id"] != lsp.region_id(0, hat_id)] + [region], 0, hat, hat_id


def test_annotation_reaches_the_webhook_and_the_reviewed_dir(ls, backend, state):
    from m2fp_batch.data import ParsingDataset

    task, out = state["task"], backend.reviewed
    result, person, hat, hat_id = _annotation(state)
    client = Client(ls.url, ls.token)
    made = client.call("POST", f"/api/tasks/{task['id']}/annotations", {"result": result})
    rows = _wait_for(out, lambda r: task["id"] in r)
    row = rows[task["id"]]
    assert (row["review_status"], row["review_edited"]) == ("reviewed", True)
    assert row["label_studio_image"] == task["data"][lsp.IMAGE]
    assert Path(row["uri"]).read_bytes() == state["photo"]
    parts = {q["label_id"]: decode_mask(q["mask"]) for q in row["persons"][person]["parts"]}
    assert np.array_equal(parts[hat_id], hat)

    ds = ParsingDataset(out)
    assert len(ds) == 1
    sample = ds[0]
    assert sample["image"].shape[:2] == state["shape"]
    assert (sample["semantic"][hat] == hat_id).all(), "the dataset reads the annotated part"
    instances = np.unique(sample["parts"][hat])
    assert len(instances) == 1 and instances[0] > 0 and (sample["humans"][hat] > 0).all()

    # the same event twice: one row; then an update wins; a deletion empties the dir
    event = {  # what the backend reads of Label Studio's event (it reads the task back from Label Studio)
        "action": "ANNOTATION_CREATED",
        "annotation": {"id": made["id"], "task": task["id"]},
        "task": {"id": task["id"]},
        "project": {"id": state["project_id"]},
    }
    for _ in range(2):
        status, _, body = ls_post(backend, "webhook", event)
        assert status == 200 and body["status"] == "accepted", body
    time.sleep(3)
    rows = _wait_for(out, lambda r: len(r) == 1)
    assert len(json.loads((out / EXPORT_FILE).read_text())["files"]) == 1
    assert len(list(out.glob("*.parquet"))) == 1
    rejected = [*result, {"from_name": lsp.VERDICT, "to_name": lsp.IMAGE, "type": "choices",
                          "value": {"choices": [lsp.VERDICT_REJECTED]}}]  # fmt: skip
    client.call("PATCH", f"/api/annotations/{made['id']}", {"result": rejected})
    _wait_for(out, lambda r: r.get(task["id"], {}).get("review_status") == "rejected")
    assert len(ParsingDataset(out)) == 0, "a rejected task is not trained on"
    client.call("DELETE", f"/api/annotations/{made['id']}")
    _wait_for(out, lambda r: task["id"] not in r)
    client.call("POST", f"/api/tasks/{task['id']}/annotations", {"result": result})
    _wait_for(out, lambda r: r.get(task["id"], {}).get("review_status") == "reviewed")


def test_train_reads_the_reviewed_dir(backend, tiny_model_dir, tmp_path):
    args = ["train", "--data", str(backend.reviewed), "--model", str(tiny_model_dir), "--out", str(tmp_path / "new")]
    done = cli(*args, "--steps", "1", "--batch", "1", "--crop", "96", "--num-points", "256", env=dict(os.environ))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    record = json.loads((tmp_path / "new" / "training.json").read_text())
    assert record["steps"] == 1 and record["data"] == [str(backend.reviewed)]


def local_folder(ls, state) -> Path:
    """A folder under Label Studio's document root, served to the project (a local-files storage)."""
    folder = ls.document_root / "big"
    if not folder.exists():
        folder.mkdir()
        storage = {"project": state["project_id"], "path": str(folder), "title": "big", "use_blob_urls": False}
        Client(ls.url, ls.token).call("POST", "/api/storages/localfiles", storage)
    return folder


def test_hostile_image_url_404_and_outside_host(ls, backend, state):
    local_folder(ls, state)
    tasks = [
        {"id": 901, "data": {"image": "/data/local-files/?d=big/missing.jpg"}},
        {"id": 902, "data": {"image": "http://169.254.169.254/latest/meta-data/"}},
        {"id": 903, "data": {}},
        {"id": 904, "data": {"image": "/data/upload/999/nope.jpg"}},  # Label Studio answers 500 here
    ]
    status, _, body = ls_post(backend, "predict", {"tasks": tasks, "label_config": lsp.label_config()})
    assert status == 200, body
    kinds = [(r["result"], r["error_kind"]) for r in body["results"]]
    assert kinds == [([], "not_found"), ([], "forbidden"), ([], "missing"), ([], "unavailable")], body
    assert "404" in body["results"][0]["error"] and "--allow-fetch" in body["results"][1]["error"]
    assert "HTTP 500" in body["results"][3]["error"]
    _wait_log(backend, "task 901: no prediction (not_found)", "task 902: no prediction (forbidden)")


def _wait_log(backend, *lines: str, timeout: float = 120) -> None:
    """Wait until serve's log (the replicas' lines reach it asynchronously through Ray) holds every line."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        text = backend.log.read_text()
        if all(line in text for line in lines):
            return
        time.sleep(1.0)
    raise AssertionError(f"serve's log lacks {[x for x in lines if x not in backend.log.read_text()]}")


def test_hostile_label_config_with_other_classes(ls, backend):
    foreign = '<View><Image name="image" value="$image"/><BrushLabels name="m2fp_parts" toName="image">'
    foreign += '<Label value="Car"/><Label value="Face"/></BrushLabels></View>'
    status, _, body = ls_post(backend, "setup", {"project": "1.1", "schema": foreign, "hostname": ls.url})
    assert status == 422 and body["error_kind"] == "invalid_config"
    assert "['Car']" in body["error"] and "20 classes" in body["error"]
    status, _, body = ls_post(backend, "predict", {"tasks": [], "label_config": foreign})
    assert status == 422 and "Car" in body["error"]
    client = Client(ls.url, ls.token)
    client.call("POST", "/api/projects", {"title": "cars", "label_config": foreign})
    env = {**os.environ, "LABEL_STUDIO_API_KEY": ls.token}
    args = ["label-studio", "connect", "--url", ls.url, "--project", "cars", "--backend", backend.url + "ls"]
    done = cli(*args, env=env)
    assert done.returncode == 2 and "not made by m2fp-batch" in done.stderr and "Traceback" not in done.stderr


def test_hostile_wrong_or_missing_tokens(ls, backend, state):
    task = {"id": state["task"]["id"], "data": state["task"]["data"]}
    for auth in (None, ("m2fp", "wrong")):
        status, headers, body = ls_post(backend, "predict", {"tasks": [task]}, auth=auth)
        assert status == 401 and body["error_kind"] == "unauthorized" and "WWW-Authenticate" in headers
    status, _, _ = request(backend.url + "ls/health", None, {}, 30)
    assert status == 401
    setup = {"project": f"{state['project_id']}.1", "schema": lsp.label_config(), "hostname": ls.url}
    try:
        for token, expect in (("0" * 40, "refused the token"), (None, "no Label Studio token")):
            status, _, body = ls_post(backend, "setup", {**setup, "access_token": token})
            assert status == 200 and body["model_version"] == state["model_version"]
            status, _, body = ls_post(backend, "predict", {"tasks": [task]})
            assert status == 200 and body["results"][0]["result"] == []
            assert body["results"][0]["error_kind"] == "unauthorized" and expect in body["results"][0]["error"]
    finally:
        ls_post(backend, "setup", {**setup, "access_token": ls.token})
    assert "0" * 40 not in backend.log.read_text() and ls.token not in backend.log.read_text()


def test_hostile_100_mb_image(ls, backend, state):
    (local_folder(ls, state) / "huge.jpg").write_bytes(photo_bytes()[:2000] + os.urandom(100 * 2**20))
    task = {"id": 905, "data": {"image": "/data/local-files/?d=big/huge.jpg"}}
    status, _, body = ls_post(backend, "predict", {"tasks": [task]})
    assert status == 200 and body["results"][0]["error_kind"] == "too_large", body
    assert "limit" in body["results"][0]["error"]


def test_hostile_20_concurrent_predicts(backend, state):
    task = {"id": state["task"]["id"], "data": state["task"]["data"]}

    def one(_):
        return ls_post(backend, "predict", {"tasks": [task]}, timeout=300)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(one, range(20)))
    statuses = [s for s, _, _ in answers]
    assert set(statuses) <= {200, 503}, statuses
    busy = [(h, b) for s, h, b in answers if s == 503]
    assert busy, "20 concurrent /predict calls over a capacity of 6 got no 503"
    assert all(h.get("Retry-After") and b["error_kind"] == "overloaded" for h, b in busy)
    done = [b for s, _, b in answers if s == 200]
    stored = {r["id"]: r["value"]["rle"] for r in state["prediction"]["result"]}
    assert done and all({r["id"]: r["value"]["rle"] for r in b["results"][0]["result"]} == stored for b in done)
    status, _, body = request(backend.url + "ls/health", None, _basic(*AUTH), 30)
    assert status == 200 and json.loads(body)["status"] == "UP"
