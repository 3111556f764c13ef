#!/usr/bin/env python
"""A 200-image Label Studio push and pull, timed through the commands users run.

    python benchmarks/bench_label_studio.py [--n 200] [--source JOB_OUTPUT] [--work DIR] [--json out.json]

Starts a real Label Studio 1.23.2 (``.venv-ls``, ``make review-tools``; SQLite, 127.0.0.1, a fresh
HOME). The rows: ``--masks synthetic`` (default) writes N rows over 4 real photos (astronaut, coffee,
chelsea, grace_hopper, served by local-files storage) whose people are the smooth standing figures of
tests/synthetic_labels.py (3 people, ~9 parts each: masks with a trained model's run counts);
``--masks job`` runs the real job (tiny model, random weights) and tiles its rows to N (noise-like
masks: their brush RLE is ~100x larger, a pessimistic size). Measured in one run:

* ``label-studio push`` creating N tasks, and a second push (nothing changed: the update check);
* a reviewer approving every task (annotations posted through the REST API, not timed);
* ``label-studio pull`` of N annotated tasks, and a second pull;
* the bare loop for scale: reading the rows and decoding every mask (what push cannot avoid), and
  encoding them in Label Studio's RLE.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))
from bench_review import make_source, tile, write_photos  # noqa: E402
from review_tools.server import LabelStudioServer  # noqa: E402
from synthetic_labels import labelled_row, write_output  # noqa: E402

PROJECT = "bench push pull"


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, dict]:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "m2fp_batch.cli", *cmd], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode not in (0, 1):
        raise SystemExit(f"{cmd[:2]} failed: {done.stderr[-2000:]}")
    return seconds, json.loads(done.stdout)


def approve_all(server: LabelStudioServer, project_id: int) -> int:
    """Post an annotation on every task copying its prediction (a reviewer who approves)."""
    from m2fp_batch.labelstudio.client import Client

    client = Client(server.url, server.token)
    n = 0
    for task in client.tasks(project_id):
        result = task["predictions"][0]["result"] if task.get("predictions") else []
        client.call("POST", f"/api/tasks/{task['id']}/annotations/", {"result": result})
        n += 1
    return n


def bare_loop(out: Path) -> tuple[float, float]:
    """Seconds to read + decode every mask, and to encode them all in Label Studio's RLE."""
    from m2fp_batch.annotate import ls_rle
    from m2fp_batch.labels import decode_persons, open_labels

    t0 = time.perf_counter()
    masks = [m for _, row in open_labels(out).iter_rows() for p in decode_persons(row) for m in [p.mask, *p.part_masks]]
    t1 = time.perf_counter()
    for m in masks:
        ls_rle.encode(m)
    return t1 - t0, time.perf_counter() - t1


def synthetic_source(work: Path, n: int) -> Path:
    """N rows over 4 real photos, people drawn as smooth figures (3 per photo), as one committed shard."""
    from PIL import Image

    images = write_photos(work)
    photos = sorted(images.iterdir())
    sizes = {p: Image.open(p).size for p in photos}
    rows = []
    for k in range(n):
        photo = photos[k % len(photos)]
        w, h = sizes[photo]
        rows.append(labelled_row(f"img-{k:05d}", str(photo), (h, w), people=3, seed=k))
    return write_output(work / "synthetic", rows)


def cpu_name() -> str:
    flags = Path("/proc/cpuinfo").read_text()
    model = next((ln.split(":", 1)[1].strip() for ln in flags.splitlines() if ln.startswith("model name")), "?")
    return f"{model}, {os.cpu_count()} CPUs, {'AVX-512' if 'avx512f' in flags else 'AVX2'}"


def run(args: argparse.Namespace, work: Path) -> dict:
    if args.masks == "synthetic":
        tiled = synthetic_source(work, args.n)
    else:
        tiled = work / "tiled"
        tile(Path(args.source) if args.source else make_source(work), args.n, tiled)
    root = Path(args.document_root or work).resolve()
    server = LabelStudioServer(work / "ls", root).start()
    env = {**os.environ, "LABEL_STUDIO_API_KEY": server.token, "PYTHONPATH": str(REPO)}
    common = ["--url", server.url, "--project", PROJECT]
    try:
        push1, s1 = timed(["label-studio", "push", str(tiled), *common, "--document-root", str(root)], env)
        push2, s2 = timed(["label-studio", "push", str(tiled), *common, "--document-root", str(root)], env)
        approved = approve_all(server, s1["project_id"])
        pull1, p1 = timed(["label-studio", "pull", str(tiled), *common, "--out", str(work / "reviewed")], env)
        pull2, _ = timed(["label-studio", "pull", str(tiled), *common, "--out", str(work / "reviewed")], env)
    finally:
        server.stop()
    decode_s, encode_s = bare_loop(tiled)
    return {
        "n": args.n,
        "masks": args.masks,
        "cpu": cpu_name(),
        "load_average": os.getloadavg(),
        "push_create_s": round(push1, 2),
        "push_create_images_per_s": round(s1["created"] / push1, 1),
        "push_again_s": round(push2, 2),
        "push_again": {k: s2[k] for k in ("created", "updated", "unchanged")},
        "approved": approved,
        "pull_s": round(pull1, 2),
        "pull_images_per_s": round(p1["rows"] / pull1, 1),
        "pull_again_s": round(pull2, 2),
        "pull_by_status": p1["by_status"],
        "bare_read_decode_s": round(decode_s, 2),
        "bare_ls_rle_encode_s": round(encode_s, 2),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200, help="images (default 200)")
    p.add_argument(
        "--masks", choices=("synthetic", "job"), default="synthetic", help="smooth figures or the tiny job's"
    )
    p.add_argument("--source", help="with --masks job: a job output to tile (default: run the job on 4 photos)")
    p.add_argument("--work", help="work directory (default: a temp dir)")
    p.add_argument("--document-root", help="where the --source photos lie (default: --work, where the job's are)")
    p.add_argument("--json", help="write the results here too")
    args = p.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_ls_"))
    work.mkdir(parents=True, exist_ok=True)
    result = run(args, work)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
