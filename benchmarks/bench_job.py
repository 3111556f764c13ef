"""The Ray job against the bare engine loop, in one run, on the same images.

    .venv/bin/python benchmarks/bench_job.py --model /tmp/m2fp_seed3 --images 12 --threads 2

1. bare loop: ``load_image`` + ``M2FPParser.parse`` image by image in this process (torch
   threads = ``--threads``), model load excluded; run before AND after the job (the mean is the
   baseline), so a machine whose load changes during the run does not bias the ratio;
2. the job: ``run_job`` on a local Ray with ``--threads`` CPUs, one actor of ``--threads`` CPUs,
   into a fresh output directory.

Prints (and writes with ``--json``) images/s of both, their ratio (steady state: from the first
labelled rows to the end, i.e. without Ray start and model load; and end to end), Parquet bytes
per image, and the peak RSS of the driver and of the model actor.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from m2fp_batch.inference import M2FPParser, load_image  # noqa: E402


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
    parser.parse([load_image(paths[0])])  # warm-up, as the job's first batch pays the same
    t0 = time.perf_counter()
    for p in paths:
        parser.parse([load_image(p)])
    sec = time.perf_counter() - t0
    return {"images": len(paths), "seconds": round(sec, 3), "images_per_s": round(len(paths) / sec, 4)}


def job(model: str, src: Path, out: Path, threads: int, batch_size: int) -> dict:
    import ray

    from m2fp_batch.pipeline.config import JobConfig
    from m2fp_batch.pipeline.job import run_job

    cfg = JobConfig.from_sources(
        None,
        {
            "input": str(src),
            "output": str(out),
            "model": model,
            "num_cpus": threads,
            "cpus_per_actor": threads,
            "batch_size": batch_size,
            "shard_size": 64,
            "overwrite": True,
        },
    )
    sampler = RssSampler()
    sampler.start()
    t0 = time.perf_counter()
    summary = run_job(cfg)
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    ray.shutdown()
    run = summary["run"]
    return {
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="/tmp/m2fp_seed3", help="model dir (full size: gen_checkpoint.py output)")
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--short-edge", type=int, default=640, help="short edge of the test photos (px)")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="CPUs for both runs")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    tmp = Path(tempfile.mkdtemp(prefix="bench_job_"))
    try:
        paths = photos(args.images, args.short_edge, tmp / "in")
        # bare loop before and after the job: on a shared machine the load changes over minutes
        bare_before = bare_loop(args.model, paths, args.threads)
        load_before = os.getloadavg()[0]
        j = job(args.model, tmp / "in", tmp / "out", args.threads, args.batch_size)
        load_job = os.getloadavg()[0]
        bare_after = bare_loop(args.model, paths, args.threads)
        load_after = os.getloadavg()[0]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bare_mean = round((bare_before["images_per_s"] + bare_after["images_per_s"]) / 2, 4)
    res = {
        "model": args.model,
        "images": args.images,
        "short_edge": args.short_edge,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "bare_loop_before": bare_before,
        "bare_loop_after": bare_after,
        "bare_images_per_s_mean": bare_mean,
        "job": j,
        "load_average_1min": {"after_bare_before": load_before, "after_job": load_job, "after_bare_after": load_after},
        "ratio_steady": round(j["steady_images_per_s"] / bare_mean, 3) if j["steady_images_per_s"] else None,
        "ratio_end_to_end": round(j["images_per_s_end_to_end"] / bare_mean, 3),
    }
    print(json.dumps(res, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
