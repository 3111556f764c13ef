"""The Ray job against the bare engine loop, in one run, on the same images.

    .venv/bin/python benchmarks/bench_job.py --model /tmp/m2fp_seed3 --images 12 --threads 2

1. bare loop: ``decode_image`` + ``M2FPParser.parse`` image by image in this process (torch
   threads = ``--threads``), model load excluded; run before AND after the job (the mean is the
   baseline), so a machine whose load changes during the run does not bias the ratio;
2. the job: ``run_job`` on a local Ray with ``--threads`` CPUs, one actor of ``--threads`` CPUs,
   into a fresh output directory.

Prints (and writes with ``--json``) images/s of both, their ratio (steady state: from the first
labelled rows to the end, i.e. without Ray start and model load; and end to end), Parquet bytes
per image, and the peak RSS of the driver and of the model actor.

    .venv/bin/python benchmarks/bench_job.py --layouts     # 1 actor x N threads vs N actors x 1 thread
    .venv/bin/python benchmarks/bench_job.py --nodes 2     # a head + a `ray start --address` node

``--layouts`` runs the job twice on the same photos on a local Ray of ``--threads`` CPUs: one
actor with all the threads, then one single-thread actor per CPU; prints both and their ratio.
``--nodes K`` starts a Ray head plus K-1 more nodes on this machine (1 CPU each, one actor of
1 thread per node), runs the job there and on a single 1-CPU node, and prints the scaling ratio
(K nodes / 1 node) and the job over the bare engine on the same CPUs (K single-thread bare
loops in parallel processes).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from m2fp_batch.decode import decode_image  # noqa: E402
from m2fp_batch.inference import M2FPParser  # noqa: E402
from m2fp_batch.logs import configure_logging  # noqa: E402


def photos(n: int, short_edge: int, root: Path) -> list[Path]:
    """Real photos (skimage, matplotlib), resized so the short edge is ``short_edge``, as JPEGs."""
    import matplotlib.cbook
    from skimage import data

    srcs = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.immunohistochemistry()]
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        srcs.insert(1, np.asarray(Image.open(f).convert("RGB")))
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        im = Image.fromarray(srcs[i % len(srcs)])
        if i // len(srcs) % 2:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        s = short_edge / min(im.size)
        im = im.resize((round(im.width * s), round(im.height * s)), Image.BILINEAR)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=90)
        p = root / f"img_{i:04d}.jpg"
        p.write_bytes(buf.getvalue())
        out.append(p)
    return out


class RssSampler(threading.Thread):
    """Peak RSS of this process and of its descendant Ray actor processes running the Labeler."""

    def __init__(self, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.stop = threading.Event()
        self.driver_peak = 0
        self.actor_peak = 0

    def run(self) -> None:
        me = psutil.Process()
        while not self.stop.is_set():
            self.driver_peak = max(self.driver_peak, me.memory_info().rss)
            for child in me.children(recursive=True):
                try:
                    if "Labeler" in " ".join(child.cmdline()):
                        self.actor_peak = max(self.actor_peak, child.memory_info().rss)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            self.stop.wait(self.interval)


def bare_loop(model: str, paths: list[Path], threads: int) -> dict:
    parser = M2FPParser.from_pretrained(model, threads=threads)
    parser.parse([decode_image(Path(paths[0]).read_bytes())])  # warm-up, as the job's first batch pays the same
    t0 = time.perf_counter()
    for p in paths:
        parser.parse([decode_image(Path(p).read_bytes())])
    sec = time.perf_counter() - t0
    return {"images": len(paths), "seconds": round(sec, 3), "images_per_s": round(len(paths) / sec, 4)}


def job(model: str, src: Path, out: Path, threads: int, batch_size: int, cpus_per_actor: int | None = None) -> dict:
    import ray

    from m2fp_batch.pipeline.config import JobSettings
    from m2fp_batch.pipeline.job import run_job

    per_actor = cpus_per_actor or threads
    cfg = JobSettings.from_sources(
        None,
        {
            "input": str(src),
            "output": str(out),
            "model": model,
            "num_cpus": threads,
            "cpus_per_actor": per_actor,
            "min_actors": threads // per_actor,
            "batch_size": batch_size,
            "shard_size": 64,
            "overwrite": True,
        },
    )
    sampler = RssSampler()
    sampler.start()
    t0 = time.perf_counter()
    summary = run_job(cfg).to_dict()
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    ray.shutdown()
    run = summary["run"]
    return {
        "layout": f"{threads // per_actor} actor(s) x {per_actor} thread(s)",
        "images": summary["rows"],
        "status": summary["status"],
        "wall_s": round(wall, 3),
        "images_per_s_end_to_end": round(summary["rows"] / wall, 4),
        "ray_start_s": run["ray_start_s"],
        "first_rows_after_s": run["first_rows_after_s"],
        "steady_images_per_s": run["steady_images_per_s"],
        "parquet_bytes_per_image": summary["parquet_bytes_per_image"],
        "driver_peak_rss_mb": round(sampler.driver_peak / 2**20, 1),
        "actor_peak_rss_mb": round(sampler.actor_peak / 2**20, 1),
    }


def bare_parallel(model: str, paths: list[Path], procs: int) -> dict:
    """``procs`` single-thread bare loops in parallel processes, the photos split between them."""
    code = (
        "import json,sys;sys.path.insert(0,sys.argv[1]);from bench_job import bare_loop;"
        "print(json.dumps(bare_loop(sys.argv[2],[__import__('pathlib').Path(p) for p in sys.argv[3:]],1)))"
    )
    here = str(Path(__file__).resolve().parent)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    ps = [
        subprocess.Popen(
            [sys.executable, "-c", code, here, model, *map(str, paths[i::procs])],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        for i in range(procs)
    ]
    each = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in ps]
    # each loop's own rate (model load and warm-up excluded), summed: the CPUs' bare throughput
    return {
        "processes": procs,
        "per_process": each,
        "images_per_s": round(sum(e["images_per_s"] for e in each), 4),
        "wall_s_with_load": round(time.perf_counter() - t0, 1),
    }


def cluster_job(model: str, src: Path, out: Path, nodes: int, batch_size: int) -> dict:
    """The job via ``m2fp-batch run --address`` on a head plus ``nodes - 1`` nodes, 1 CPU each."""
    sys.path.insert(0, str(REPO / "tests" / "pipeline"))
    from cluster import ray_head, ray_worker

    os.environ["RAY_AUTH_MODE"] = "token"
    with contextlib.ExitStack() as stack:
        gcs, _, env, _ = stack.enter_context(ray_head(num_cpus=1, multi_node=nodes > 1))
        for _ in range(nodes - 1):
            stack.enter_context(ray_worker(gcs, env, num_cpus=1))
        cmd = [
            sys.executable, "-m", "m2fp_batch.cli", "run", "--input", str(src), "--out", str(out),
            "--model", model, "--address", gcs, "--batch-size", str(batch_size), "--shard-size", "64",
            "--overwrite", "--set", "cpus_per_actor=1",
        ]  # fmt: skip
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=REPO, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    summary = json.loads((out / "_run.json").read_text())
    run = summary["run"]
    return {
        "nodes": nodes,
        "images": summary["rows"],
        "status": summary["status"],
        "wall_s": round(wall, 3),
        "first_rows_after_s": run["first_rows_after_s"],
        "steady_images_per_s": run["steady_images_per_s"],
        "model_loads_per_node": list(run["model_loads_per_node"].values()),
        "startup": run["startup"],
        "actor_startup": run["actor_startup"],
    }


def run_ceiling(args, tmp: Path) -> dict:
    """The job's own machinery: a manifest of ``--rows`` files that do not exist, so every row is
    an error row and no model runs. Rows/s end to end, steady (from the first row) and by stage."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import ray

    from m2fp_batch.pipeline.config import JobSettings
    from m2fp_batch.pipeline.job import run_job

    manifest = tmp / "missing.csv"
    manifest.write_text("uri\n" + "".join(f"{tmp}/absent/{i:07d}.jpg\n" for i in range(args.rows)))
    out = tmp / "out_ceiling"
    cfg = JobSettings.from_sources(None, {"input": str(manifest), "output": str(out), "model": args.model,
                                        "num_cpus": args.threads, "overwrite": True})  # fmt: skip
    t0 = time.perf_counter()
    summary = run_job(cfg).to_dict()
    wall = time.perf_counter() - t0
    ray.shutdown()
    run, rows = summary["run"], summary["rows"]
    start = run["startup"]
    # run["seconds"] counts from the end of planning; startup from the job's beginning
    steady_s = start["planned"] + run["seconds"] - start["first_row"] if "first_row" in start else None
    timings = pq.read_table(out, columns=["timings"]).column("timings").combine_chunks()
    read_s = float(pc.sum(timings.field("read_s")).as_py() or 0.0)
    stage_s = {
        "listing (manifest -> listing, resume check)": start["listed"] - start["model_resolved"],
        "reading (read tasks, summed)": read_s,
        "committing (driver: rows -> shards)": run["driver_s"]["committing"],
        "writing (driver: Parquet + stats)": run["driver_s"]["writing"],
    }
    return {
        "rows": rows,
        "status": summary["status"],
        "error_kinds": summary["error_kinds"],
        "wall_s": round(wall, 2),
        "rows_per_s_end_to_end": round(rows / wall, 1),
        "rows_per_s_from_first_row": round(rows / steady_s, 1) if steady_s else None,
        "stage_s": {k: round(v, 3) for k, v in stage_s.items()},
        "stage_rows_per_s": {k: round(rows / v, 1) if v > 0 else None for k, v in stage_s.items()},
        "startup": start,
        "actors": run["actors_max"],
    }


def run_layouts(args, paths: list[Path], tmp: Path) -> dict:
    """1 actor x N threads against N actors x 1 thread, same photos, one run (twice, interleaved)."""
    big, small = [], []
    for r in range(args.rounds):
        big.append(job(args.model, tmp / "in", tmp / f"out_big{r}", args.threads, args.batch_size, args.threads))
        small.append(job(args.model, tmp / "in", tmp / f"out_small{r}", args.threads, args.batch_size, 1))
    rate = lambda runs: statistics.mean(j["steady_images_per_s"] for j in runs)  # noqa: E731
    return {
        "one_big_actor": big,
        "many_small_actors": small,
        "steady_images_per_s": {"1 x N threads": round(rate(big), 4), "N x 1 thread": round(rate(small), 4)},
        "ratio_many_small_over_one_big": round(rate(small) / rate(big), 3),
    }


def run_nodes(args, paths: list[Path], tmp: Path) -> dict:
    """One node, then ``--nodes`` nodes (``--end-to-end``: the commands' wall times, start-up
    included, and no bare loop; else the steady state and the bare loops in parallel)."""
    one = cluster_job(args.model, tmp / "in", tmp / "out1", 1, args.batch_size)
    bare = None if args.end_to_end else bare_parallel(args.model, paths, args.nodes)
    many = cluster_job(args.model, tmp / "in", tmp / "outk", args.nodes, args.batch_size)
    res = {
        "one_node": one,
        f"{args.nodes}_nodes": many,
        "scaling_ratio_steady": round(many["steady_images_per_s"] / one["steady_images_per_s"], 3),
        "scaling_ratio_end_to_end": round(one["wall_s"] / many["wall_s"], 3),
    }
    if bare:
        res.update(bare_parallel=bare, job_over_bare=round(many["steady_images_per_s"] / bare["images_per_s"], 3))
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="/tmp/m2fp_seed3", help="model dir (full size: gen_checkpoint.py output)")
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--short-edge", type=int, default=640, help="short edge of the test photos (px)")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="CPUs for both runs")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--layouts", action="store_true", help="1 actor x N threads vs N actors x 1 thread")
    ap.add_argument("--rounds", type=int, default=1, help="--layouts: repeat both layouts, interleaved")
    ap.add_argument("--nodes", type=int, default=None, help="a Ray head plus NODES-1 nodes, 1 CPU each")
    ap.add_argument("--end-to-end", action="store_true", help="--nodes: compare whole commands, start-up included")
    ap.add_argument("--ceiling", action="store_true", help="error rows only: the job's own rows/s by stage")
    ap.add_argument("--rows", type=int, default=10000, help="--ceiling: missing files in the manifest")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    configure_logging()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # the pool's min_actors start before batches flow, so every layout runs at full size from its first rows
    os.environ.setdefault("RAY_DATA_DEFAULT_WAIT_FOR_MIN_ACTORS_S", "600")
    tmp = Path(tempfile.mkdtemp(prefix="bench_job_"))
    try:
        paths = [] if args.ceiling else photos(args.images, args.short_edge, tmp / "in")
        load0 = os.getloadavg()[0]
        if args.ceiling:
            res = run_ceiling(args, tmp)
        elif args.layouts:
            res = run_layouts(args, paths, tmp)
        elif args.nodes:
            res = run_nodes(args, paths, tmp)
        else:
            res = run_bare_vs_job(args, paths, tmp)
        res.update(
            model=args.model,
            images=args.images,
            short_edge=args.short_edge,
            cpu_count=os.cpu_count(),
            cpu=_cpu_name(),
            load_average_1min_before_after=[load0, os.getloadavg()[0]],
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(res, indent=2))
    if "rows_per_s_end_to_end" in res:
        print(f"ceiling: {res['rows_per_s_from_first_row']} error rows/s from the first row "
              f"({res['rows_per_s_end_to_end']} end to end, start-up included) over {res['rows']} missing files")  # fmt: skip
    if "scaling_ratio_end_to_end" in res:
        print(f"{args.nodes} nodes / 1 node: {res['scaling_ratio_end_to_end']} end to end (start-up included), "
              f"{res['scaling_ratio_steady']} steady")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


def _cpu_name() -> str:
    return next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")


def run_bare_vs_job(args, paths: list[Path], tmp: Path) -> dict:
    """The bare loop before and after the job (the mean is the baseline), then the ratios."""
    bare_before = bare_loop(args.model, paths, args.threads)
    load_before = os.getloadavg()[0]
    j = job(args.model, tmp / "in", tmp / "out", args.threads, args.batch_size)
    load_job = os.getloadavg()[0]
    bare_after = bare_loop(args.model, paths, args.threads)
    load_after = os.getloadavg()[0]
    bare_mean = round((bare_before["images_per_s"] + bare_after["images_per_s"]) / 2, 4)
    return {
        "threads": args.threads,
        "bare_loop_before": bare_before,
        "bare_loop_after": bare_after,
        "bare_images_per_s_mean": bare_mean,
        "job": j,
        "load_average_1min": {"after_bare_before": load_before, "after_job": load_job, "after_bare_after": load_after},
        "ratio_steady": round(j["steady_images_per_s"] / bare_mean, 3) if j["steady_images_per_s"] else None,
        "ratio_end_to_end": round(j["images_per_s_end_to_end"] / bare_mean, 3),
    }


if __name__ == "__main__":
    sys.exit(main())
