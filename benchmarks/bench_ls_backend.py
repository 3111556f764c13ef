#!/usr/bin/env python
"""``/ls/predict`` latency per task (the Label Studio ML backend) against ``/api/parse`` on the same photos.

    python benchmarks/bench_ls_backend.py --model /tmp/m2fp_seed3 [--images 6] [--threads 2] [--json out.json]

Starts a real Label Studio 1.23.2 (``.venv-ls``; ``USE_DEFAULT_BANNED_SUBNETS=false``) and
``m2fp-batch serve`` (one replica, ``--threads``), connects the backend (``label-studio connect``) and
uploads ``--images`` real 640x640 photos (benchmarks/bench_serve.photos) as tasks. Then, one request
at a time, after one warm-up each, the two first ones interleaved photo by photo:

* ``POST /api/parse`` with each photo's bytes (the service's own answer);
* ``POST /ls/predict`` with each task as Label Studio sends it (the backend fetches the photo from
  Label Studio, labels it, encodes the regions in Label Studio's brush RLE);
* Label Studio's own ``retrieve_tasks_predictions`` over all the tasks (one ``/predict`` call with every
  task, and Label Studio storing the predictions), per task.

Prints p50 / mean seconds per task of each and the ratios to ``/api/parse``, with the CPU and load.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))
from bench_label_studio import cpu_name  # noqa: E402
from bench_serve import free_port, photos, post  # noqa: E402
from review_tools.server import LabelStudioServer  # noqa: E402
from serve.conftest import multipart, request  # noqa: E402

from m2fp_batch.labelstudio.client import Client  # noqa: E402

PROJECT = "bench ml backend"


def start_serve(model: str, threads: int, port: int, home: Path) -> tuple[subprocess.Popen, Path]:
    log = home / "serve.log"
    env = {**os.environ, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO)}
    env.pop("LABEL_STUDIO_URL", None)
    env.pop("LABEL_STUDIO_API_KEY", None)
    cmd = [sys.executable, "-m", "m2fp_batch.cli", "serve", "--model", model, "--port", str(port)]
    cmd += ["--threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    end = time.time() + 600
    while '{"ready": ' not in log.read_text():
        if proc.poll() is not None or time.time() > end:
            raise RuntimeError(f"serve did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return proc, log


def upload_all(server: LabelStudioServer, project_id: int, blobs: list[bytes]) -> list[dict]:
    client = Client(server.url, server.token)
    tasks = []
    for k, blob in enumerate(blobs):
        body, ctype = multipart({"file": (f"photo{k}.jpg", blob)})
        headers = {"Content-Type": ctype, "Authorization": f"Token {server.token}"}
        url = f"{server.url}/api/projects/{project_id}/import?return_task_ids=true"
        status, _, raw = request(url, body, headers, 300)
        if status != 201:
            raise RuntimeError(f"import answered {status}: {raw[:300]!r}")
        (tid,) = json.loads(raw)["task_ids"]
        tasks.append(client.call("GET", f"/api/tasks/{tid}"))
    return tasks


def predict(port: int, task: dict) -> float:
    body = json.dumps({"tasks": [{"id": task["id"], "data": task["data"]}]}).encode()
    t0 = time.perf_counter()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/ls/predict", body, {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=900) as r:  # noqa: S310 - loopback
        answer = json.loads(r.read())
    seconds = time.perf_counter() - t0
    if not answer["results"][0]["result"] and answer["results"][0].get("error"):
        raise RuntimeError(answer["results"][0]["error"])
    return seconds


def stats(xs: list[float]) -> dict:
    return {"p50_s": round(float(np.median(xs)), 3), "mean_s": round(float(np.mean(xs)), 3)}


def measure(server: LabelStudioServer, port: int, blobs: list[bytes]) -> dict:
    env = {**os.environ, "LABEL_STUDIO_API_KEY": server.token, "PYTHONPATH": str(REPO)}
    backend = f"http://127.0.0.1:{port}/ls"
    args = ["label-studio", "connect", "--url", server.url, "--project", PROJECT, "--backend", backend]
    done = subprocess.run([sys.executable, "-m", "m2fp_batch.cli", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"connect failed: {done.stdout} {done.stderr[-2000:]}")
    pid = json.loads(done.stdout)["project_id"]
    tasks = upload_all(server, pid, blobs)
    post(port, blobs[0])
    predict(port, tasks[0])  # warm-ups
    parse_s, predict_s = [], []
    for blob, task in zip(blobs, tasks, strict=True):  # interleaved: both see the same load
        parse_s.append(post(port, blob))
        predict_s.append(predict(port, task))
    client = Client(server.url, server.token)
    t0 = time.perf_counter()
    ids = [t["id"] for t in tasks]
    client.call(
        "POST",
        f"/api/dm/actions?id=retrieve_tasks_predictions&project={pid}",
        {"selectedItems": {"all": False, "included": ids}},
    )
    retrieve_s = time.perf_counter() - t0
    stored = sum(len(client.call("GET", f"/api/predictions?task={i}") or []) for i in ids)
    return {
        "api_parse": stats(parse_s),
        "ls_predict": stats(predict_s),
        "ls_predict_over_parse_p50": round(float(np.median(predict_s) / np.median(parse_s)), 3),
        "retrieve_tasks_predictions_s_per_task": round(retrieve_s / len(ids), 3),
        "retrieve_over_parse_p50": round(retrieve_s / len(ids) / float(np.median(parse_s)), 3),
        "predictions_stored": stored,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model dir (e.g. the full-size seed-3 checkpoint)")
    p.add_argument("--images", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="also write the numbers here")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_ls_backend_"))
    (work / "files").mkdir()
    (work / "serve").mkdir()
    load_start = os.getloadavg()
    server = LabelStudioServer(work / "ls", work / "files", {"USE_DEFAULT_BANNED_SUBNETS": "false"}).start()
    port = free_port()
    proc = None
    try:
        proc, _ = start_serve(args.model, args.threads, port, work / "serve")
        result = measure(server, port, photos(args.images))
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)
        server.stop()
    out = {
        "images": args.images,
        "threads": args.threads,
        "model": args.model,
        "cpu": cpu_name(),
        **result,
        "load_average_start_end": [load_start, os.getloadavg()],
    }
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
