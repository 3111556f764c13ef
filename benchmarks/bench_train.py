"""Training speed and memory: images/s and peak RSS of the training loop (one process, no Ray
overhead) for the tiny test config and the full-size architecture, on real photos.

    python benchmarks/bench_train.py --config tiny --steps 6 --crop 128
    python benchmarks/bench_train.py --config full --steps 3 --crop 512

Each configuration runs in a fresh child process; the first step (warm-up) is not timed.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))


def child(cfg: str, steps: int, short_edge: int, batch: int, threads: int, points: int) -> dict:
    import torch
    from tiny_model import write_reference_model, write_tiny_model

    from m2fp_batch.train.config import AugmentConfig, LossConfig
    from m2fp_batch.train.loop import run_loop
    from m2fp_batch.train.settings import TrainSettings
    from tests.train.helpers import samples

    torch.set_num_threads(threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    model = (write_tiny_model if cfg == "tiny" else write_reference_model)(tmp / "model")
    recs = samples()
    times: list[float] = []

    def report(_):
        times.append(time.perf_counter())

    settings = TrainSettings(
        data=(),
        init_model=str(model),
        out=str(tmp / "out"),
        steps=steps,
        batch_size=batch,
        checkpoint_every=10**9,
        augment=AugmentConfig(short_edge=short_edge),
        log_every=1,
        loss=LossConfig(num_points=points),
    )
    run_loop(settings, recs, ["light"] * len(recs), report=report)
    timed = times[-1] - times[0]
    return {
        "config": cfg,
        "short_edge": short_edge,
        "batch": batch,
        "steps_timed": steps - 1,
        "images_per_s": batch * (steps - 1) / timed,
        "s_per_step": timed / (steps - 1),
        "num_points": points,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "threads": threads,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", choices=["tiny", "full"], nargs="+", default=["tiny", "full"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument(
        "--crop", type=int, default=None, help="training crop, as train --crop (default: 128 tiny, 512 full)"
    )
    ap.add_argument("--batch", type=int, default=2, help="images per step, as train --batch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--num-points", type=int, default=12544, help="points per mask (12544 = upstream)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.config[0], a.steps, a.crop, a.batch, a.threads, a.num_points)))
        return
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    print("cpu:", next((x.split(":", 1)[1].strip() for x in cpu.splitlines() if x.startswith("Model name")), "?"))
    print("load average:", open("/proc/loadavg").read().split()[:3])
    for cfg in a.config:
        se = a.crop or (128 if cfg == "tiny" else 512)
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "--config",
            cfg,
            "--steps",
            str(max(2, a.steps)),
            "--crop",
            str(se),
            "--batch",
            str(a.batch),
            "--threads",
            str(a.threads),
            "--num-points",
            str(a.num_points),
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        print(json.dumps(json.loads(out)))


if __name__ == "__main__":
    main()
