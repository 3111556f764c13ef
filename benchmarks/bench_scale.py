"""The driver at store scale: memory, start and rows/s of the job over N inputs that do not exist.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_scale.py                 # N = 10k, 100k, 1M
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_scale.py --big           # and 10M
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_scale.py --kind dir      # a directory of N dangling symlinks
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_scale.py --kind s3 --sizes 1000000  # N keys under one SeaweedFS prefix

Every input is a missing file (an error row, no model runs), so the numbers are the job's own
machinery: listing, the ``_inputs`` table, the plan, Ray Data, the committer. Each N runs the
job in a fresh process (the driver: a local Ray starts as its children). Per N it prints:

* the driver's peak RSS (``ru_maxrss`` of the driver process alone) and the peak of the head
  node's Ray processes (the sum of their RSS, sampled every 0.5 s; shared object-store pages
  count in each process that maps them);
* the time to the first row (since the job began: model, listing, Ray start, first block);
* rows/s from the first row; listing rows/s (the input -> ``_inputs.parquet``);
* output bytes (shards + ``_inputs.parquet``).

Then the fitted bytes per input (least squares of the driver's peak over the N >= 100k) and the
100M projection as arithmetic. ``--stages N`` instead measures the driver's memory by stage
(tracemalloc, Arrow's allocator, RSS) for docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZES = (10_000, 100_000, 1_000_000)
BIG = 10_000_000
PROJECT_TO = 100_000_000
MB = 2**20


def write_manifest(n: int, root: Path) -> Path:
    """A CSV manifest of ``n`` local paths that do not exist."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "missing.csv"
    with path.open("w") as f:
        f.write("uri\n")
        for start in range(0, n, 100_000):
            f.write("".join(f"{root}/absent/{i:09d}.jpg\n" for i in range(start, min(n, start + 100_000))))
    return path


def write_symlinks(n: int, root: Path) -> Path:
    """A directory of ``n`` dangling symlinks (``missing`` rows), 10,000 per sub-directory."""
    d = root / "photos"
    for i in range(n):
        sub = d / f"{i // 10_000:05d}"
        if i % 10_000 == 0:
            sub.mkdir(parents=True)
        os.symlink(f"/nonexistent/{i}", sub / f"{i:09d}.jpg")
    return d


def put_keys(n: int, endpoint: str, key: str, secret: str, bucket: str = "photos") -> str:
    """``n`` empty objects under one prefix of a SeaweedFS bucket (``empty`` rows), 32 threads."""
    import concurrent.futures

    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret, region_name="us-east-1",
        config=Config(max_pool_connections=32),
    )  # fmt: skip
    s3.create_bucket(Bucket=bucket)

    def put(start: int) -> None:
        for i in range(start, min(n, start + 1000)):
            s3.put_object(Bucket=bucket, Key=f"flat/{i:09d}.jpg", Body=b"")

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        list(pool.map(put, range(0, n, 1000)))
    return f"s3://{bucket}/flat"


def own_rss() -> dict[str, int]:
    """This process's resident memory by kind (kB): RssAnon (its heap), RssFile, RssShmem (shared
    pages it touched, e.g. Ray's object store)."""
    with open("/proc/self/status") as f:
        return {k: int(v.split()[0]) for k, v in (ln.split(":", 1) for ln in f) if k.startswith("Rss")}


class RaySampler(threading.Thread):
    """The peak of the summed RSS of this process's descendants (the local Ray's processes), and
    the peak of this process's own anonymous and shared-memory RSS."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0
        self.own: dict[str, int] = {}
        self.me = psutil.Process()

    def run(self) -> None:
        while True:
            for k, v in own_rss().items():
                self.own[k] = max(self.own.get(k, 0), v)
            total = 0
            for p in self.me.children(recursive=True):
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)
            time.sleep(0.5)


def run_one(args) -> dict:
    """The job over ``args.input`` in this process; what the parent prints for one N."""
    from m2fp_batch.logs import configure_logging
    from m2fp_batch.pipeline.config import JobSettings
    from m2fp_batch.pipeline.job import run_job

    configure_logging()
    sampler = RaySampler()
    sampler.start()
    values = {"input": args.input, "output": args.output, "model": args.model, "num_cpus": 2, "overwrite": True}
    cfg = JobSettings.from_sources(None, values)
    load0 = os.getloadavg()[0]
    t0 = time.time()
    summary = run_job(cfg).to_dict()
    wall = time.time() - t0
    run, rows = summary["run"], summary["rows"]
    start = run["startup"]
    first = start.get("first_row")
    inputs_bytes = os.path.getsize(Path(args.output) / "_inputs.parquet") if not args.output.startswith("s3://") else 0
    return {
        "n": rows,
        "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "ray_peak_rss_mb": round(sampler.peak / MB, 1),
        "driver_sampled_peak_mb": {k: round(v / 1024, 1) for k, v in sampler.own.items()},
        "first_row_s": first,
        "rows_per_s_from_first_row": round(rows / (wall - first), 1) if first and wall > first else None,
        "listing_rows_per_s": round(rows / max(start["listed"] - start["model_resolved"], 1e-9), 1),
        "output_bytes": summary["parquet_bytes"] + inputs_bytes,
        "wall_s": round(wall, 1),
        "status": summary["status"],
        "load_1min_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }


def run_stages(args) -> None:
    """The driver's memory by stage: listing, the plan, the read tasks (block plan), the pipeline."""
    import pyarrow as pa

    from m2fp_batch.logs import configure_logging
    from m2fp_batch.pipeline.config import JobSettings
    from m2fp_batch.pipeline.job import _label_pending, resolve_model
    from m2fp_batch.pipeline.pending import spans
    from m2fp_batch.pipeline.progress import Timeline
    from m2fp_batch.pipeline.resume import prepare
    from m2fp_batch.pipeline.schedule import Plan
    from m2fp_batch.storage import Filesystems, S3Options

    configure_logging()
    proc, rows = psutil.Process(), []

    def mark(stage: str) -> None:
        cur, peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        rows.append({
            "stage": stage, "rss_mb": proc.memory_info().rss / MB, "python_mb": cur / MB, "python_peak_mb": peak / MB,
            "arrow_mb": pa.total_allocated_bytes() / MB,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        })  # fmt: skip
        print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in rows[-1].items()}), flush=True)

    values = {"input": args.input, "output": args.output, "model": args.model, "num_cpus": 2, "overwrite": True}
    cfg = JobSettings.from_sources(None, values)
    model = resolve_model(cfg)
    tracemalloc.start()
    mark("model resolved")
    prep = prepare(cfg, Filesystems(S3Options.from_config(cfg)), model.checkpoint_sha256)
    mark("listing (stage + _inputs.parquet + per-shard counts)")
    plan = Plan.of(prep)
    mark("plan (shards pending)")
    n = sum(1 for _ in spans(plan, 2, cfg.batch_size))
    mark(f"block plan ({n} blocks)")
    tracemalloc.stop()
    sampler = RaySampler()
    sampler.start()
    _label_pending(cfg, model, prep, plan, Timeline())
    rows.append(
        {
            "stage": "pipeline (committer, progress, Ray Data)",
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )
    return [{k: round(v, 1) if isinstance(v, float) else v for k, v in r.items()} for r in rows]


def child(n: int, kind: str, tmp: Path, args, extra: list[str]) -> dict:
    """Run one N in a fresh process; returns its JSON result."""
    out = tmp / f"out_{n}"
    cmd = [sys.executable, __file__, "--child", "--input", args.inputs[n], "--output", str(out), "--model", args.model]
    env = dict(os.environ, PYTHONPATH=str(REPO), RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.run(cmd + extra, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"N={n}: the job exited {proc.returncode}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    shutil.rmtree(out, ignore_errors=True)
    return res | {"kind": kind}


def _heap_mb(r: dict) -> float:
    return r.get("driver_sampled_peak_mb", {}).get("RssAnon", 0.0)


def fit(results: list[dict], mb=lambda r: r["driver_peak_rss_mb"]) -> dict:
    """Least squares of ``mb(result)`` (default: the driver's peak RSS) over N (the N >= 100k),
    and the 100M projection."""
    pts = [(r["n"], mb(r) * MB) for r in results if r["n"] >= 100_000] or [(r["n"], mb(r) * MB) for r in results]
    if len(pts) < 2:
        return {}
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    slope = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
    base = my - slope * mx
    projected = base + slope * PROJECT_TO
    return {
        "bytes_per_input": round(slope, 1),
        "intercept_mb": round(base / MB, 1),
        "projection_100m_mb": round(projected / MB, 1),
        "arithmetic": f"{base / MB:.0f} MB + {slope:.1f} B/input x {PROJECT_TO:,} inputs = {projected / MB:,.0f} MB",
    }


def prepare_inputs(args, tmp: Path, sizes: list[int], stack) -> None:
    args.inputs = {}
    if args.kind == "s3":
        sys.path.insert(0, str(REPO / "tests" / "pipeline"))
        from cluster import seaweedfs

        key, secret = "m2fp-bench", "m2fp-bench-secret"
        endpoint = stack.enter_context(seaweedfs(key, secret))
        os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret)
        t0 = time.time()
        src = put_keys(max(sizes), endpoint, key, secret)
        print(f"put {max(sizes):,} empty objects under {src} in {time.time() - t0:.0f} s", flush=True)
        for n in sizes:
            args.inputs[n] = src  # one prefix: the largest N only (the prefix holds max(sizes) keys)
        return
    for n in sizes:
        root = tmp / f"in_{n}"
        args.inputs[n] = str(write_manifest(n, root) if args.kind == "manifest" else write_symlinks(n, root))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model dir (default: a tiny seeded M2FP written for the run)")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated N")
    ap.add_argument("--big", action="store_true", help=f"also N = {BIG:,}")
    ap.add_argument("--kind", choices=("manifest", "dir", "s3"), default="manifest")
    ap.add_argument("--stages", type=int, default=None, help="the driver's memory by stage at this N")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--output", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_one(args)))
        return 0
    import contextlib

    tmp = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    try:
        if args.model is None:
            sys.path.insert(0, str(REPO / "tests"))
            from tiny_model import write_tiny_model

            args.model = str(write_tiny_model(tmp / "model"))
        if args.stages:
            args.input, args.output = str(write_manifest(args.stages, tmp / "in")), str(tmp / "out")
            run_stages(args)
            return 0
        sizes = [int(s) for s in args.sizes.split(",")] + ([BIG] if args.big else [])
        results = []
        with contextlib.ExitStack() as stack:
            prepare_inputs(args, tmp, sizes if args.kind != "s3" else sizes[-1:], stack)
            for n in sorted(args.inputs):
                res = child(n, args.kind, tmp, args, [])
                print(json.dumps(res), flush=True)
                results.append(res)
        report(results, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def report(results: list[dict], args) -> None:
    print(
        f"\n{'N':>11} {'driver MB':>10} {'Ray MB':>8} {'1st row s':>9} {'rows/s':>8} {'list/s':>9} {'out MB':>7} load"
    )
    for r in results:
        print(
            f"{r['n']:>11,} {r['driver_peak_rss_mb']:>10} {r['ray_peak_rss_mb']:>8} {r['first_row_s']:>9} "
            f"{r['rows_per_s_from_first_row']:>8} {r['listing_rows_per_s']:>9} {r['output_bytes'] / MB:>7.1f} "
            f"{r['load_1min_before_after']}"
        )
    f, heap = fit(results), fit(results, _heap_mb)
    if f:
        print(f"driver peak RSS: {f['bytes_per_input']} bytes/input fitted; 100M inputs: {f['arithmetic']}")
    if heap:
        print(f"driver heap (RssAnon): {heap['bytes_per_input']} bytes/input fitted; 100M inputs: {heap['arithmetic']}")
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"CPU: {cpu} ({os.cpu_count()} CPUs)")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "fit": f, "heap_fit": heap, "cpu": cpu}, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
