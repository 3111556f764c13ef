"""The service against the bare engine loop, in one run, on the same photos.

    .venv/bin/python benchmarks/bench_serve.py --model /tmp/m2fp_seed3 --images 8 --threads 2

1. bare loop: ``decode_image`` + ``M2FPParser.parse_one`` photo by photo (torch threads = ``--threads``,
   model load excluded), before AND after the service (the mean is the baseline), in a child process in
   its own session like the service (the kernel's autogroup scheduler shares CPU between sessions, so
   both sides get the same treatment on a shared machine); the same loop also times what the service
   adds per photo (the job's row + the two PNGs of a json answer);
2. the service: ``m2fp-batch serve`` on a local Ray (one replica, ``--threads`` threads, ``--max-batch``),
   on a free loopback port, warmed up with one request; then 1 client (sequential requests) and
   ``--clients`` concurrent clients posting the photos (multipart, format=json).

Prints (and writes with ``--json``) images/s of the bare loop and of the service under concurrent load,
their ratio, and p50/p95 latency at 1 and at ``--clients`` clients. Photos are real (skimage, matplotlib)
640x640 crops, so the concurrent requests share a padded size and can batch.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from m2fp_batch.annotate.parts import semantic_class_scores  # noqa: E402
from m2fp_batch.annotate.render import encode_png, people_mask, render_png  # noqa: E402
from m2fp_batch.decode import decode_image  # noqa: E402
from m2fp_batch.inference import M2FPParser  # noqa: E402
from m2fp_batch.rows import result_columns  # noqa: E402

MAX_PIXELS = 40_000_000


def photos(n: int, side: int = 640) -> list[bytes]:
    """Real photos, resized so the short edge is ``side`` and centre-cropped to side x side, as JPEGs."""
    import matplotlib.cbook
    from skimage import data

    srcs = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        srcs.insert(1, np.asarray(Image.open(f).convert("RGB")))
    out = []
    for i in range(n):
        im = Image.fromarray(srcs[i % len(srcs)])
        if i // len(srcs) % 2:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        s = side / min(im.size)
        im = im.resize((max(side, round(im.width * s)), max(side, round(im.height * s))), Image.BILINEAR)
        x0, y0 = (im.width - side) // 2, (im.height - side) // 2
        buf = io.BytesIO()
        im.crop((x0, y0, x0 + side, y0 + side)).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def bare_loop(parser: M2FPParser, blobs: list[bytes]) -> tuple[float, float]:
    """(seconds of decode + parse_one over all photos, seconds of rows + PNGs the service adds)."""
    engine = extra = 0.0
    for blob in blobs:
        t0 = time.perf_counter()
        img = decode_image(blob, max_pixels=MAX_PIXELS)
        res = parser.parse_one(img)
        t1 = time.perf_counter()
        result_columns(res, parser.class_names, img)
        semantic_class_scores(res.semantic, res.semantic_score)
        render_png("parse", img, res.semantic, res.persons)
        encode_png(people_mask(res.persons, res.semantic.shape))
        engine += t1 - t0
        extra += time.perf_counter() - t1
    return engine, extra


def bare_child(args) -> tuple[float, float]:
    """:func:`bare_loop` (after a warm-up photo) in a child process in a new session."""
    cmd = [
        sys.executable,
        __file__,
        "--model",
        args.model,
        "--images",
        str(args.images),
        "--threads",
        str(args.threads),
    ]
    out = subprocess.run([*cmd, "--bare-only"], capture_output=True, text=True, start_new_session=True, check=True)
    engine, extra = json.loads(out.stdout.strip().splitlines()[-1])
    return engine, extra


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, blob: bytes) -> float:
    boundary = "benchboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="p.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + blob
        + f"\r\n--{boundary}--\r\n".encode()
    )
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
    conn.request("POST", "/api/parse", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    r = conn.getresponse()
    payload = r.read()
    conn.close()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {payload[:300]!r}")
    return time.perf_counter() - t0


def clients(port: int, blobs: list[bytes], n_clients: int, per_client: int) -> tuple[float, list[float]]:
    """(wall seconds, latencies) of ``n_clients`` clients posting ``per_client`` photos each."""

    def client(c: int) -> list[float]:
        return [post(port, blobs[(c * per_client + i) % len(blobs)]) for i in range(per_client)]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(n_clients) as pool:
        lat = [x for xs in pool.map(client, range(n_clients)) for x in xs]
    return time.perf_counter() - t0, lat


def start_service(args, port: int, home: Path) -> tuple[subprocess.Popen, Path]:
    log = home / "serve.log"
    env = {**os.environ, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    cmd = [
        sys.executable, "-m", "m2fp_batch.cli", "serve", "--model", args.model, "--port", str(port),
        "--threads", str(args.threads), "--max-batch", str(args.max_batch),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    end = time.time() + 600
    while '{"ready": ' not in log.read_text():
        if proc.poll() is not None or time.time() > end:
            raise RuntimeError(f"the service did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return proc, log


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="model dir (the full-size seed-3 checkpoint)")
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-batch", type=int, default=1)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--json", default=None, help="also write the numbers here")
    p.add_argument("--bare-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    blobs = photos(args.images)
    if args.bare_only:
        parser = M2FPParser.from_pretrained(args.model, threads=args.threads)
        bare_loop(parser, blobs[:1])  # warm-up
        print(json.dumps(bare_loop(parser, blobs)))
        return 0
    load_start = os.getloadavg()
    before, extra = bare_child(args)
    port = free_port()
    home = Path(tempfile.mkdtemp(prefix="bench_serve"))
    proc, log = start_service(args, port, home)
    try:
        post(port, blobs[0])  # warm-up
        one_wall, one_lat = clients(port, blobs, 1, args.images)
        per = max(1, 2 * args.images // args.clients)
        many_wall, many_lat = clients(port, blobs, args.clients, per)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    time.sleep(10)  # Ray's processes finish exiting before the second bare loop
    after, _ = bare_child(args)
    bare_ips = args.images / ((before + after) / 2)
    serve_ips = len(many_lat) / many_wall
    out = {
        "images": args.images,
        "threads": args.threads,
        "max_batch": args.max_batch,
        "bare_images_per_s": {"before": args.images / before, "after": args.images / after, "mean": bare_ips},
        "service_added_s_per_image": extra / args.images,
        "engine_s_per_image": before / args.images,
        "one_client": {"images_per_s": args.images / one_wall, "p50_s": pct(one_lat, 50), "p95_s": pct(one_lat, 95)},
        f"{args.clients}_clients": {
            "requests": len(many_lat),
            "images_per_s": serve_ips,
            "p50_s": pct(many_lat, 50),
            "p95_s": pct(many_lat, 95),
        },
        "throughput_ratio_service_over_bare": serve_ips / bare_ips,
        "load_average_start_end": [load_start, os.getloadavg()],
    }
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
