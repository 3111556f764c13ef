"""The training loop on a GPU (the code path behind ``m2fp-batch train --gpu``), without Ray.

    python benchmarks/bench_train_gpu.py [--reference ../shared/reference] [--cpu-steps 2] [--steps 12] [--no-tf32]

Full-size architecture (the parity fixture's seed-3 checkpoint, regenerated), 512-px crops of the
test photos: the same first steps on the CPU and on CUDA from the same seed (their losses must
agree: with ``--no-tf32`` to float32 rounding), then CUDA steps at batch 1 and 4 with the median
step time and the peak CUDA memory. Prints one JSON line per run. Needs a CUDA device.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "benchmarks")]

from bench_train import _settings  # noqa: E402

from m2fp_batch.train.loop import run_loop  # noqa: E402
from tests.train.helpers import samples  # noqa: E402


def model_dir(reference: Path, tmp: Path) -> Path:
    """The fixture's seed-3 full-size checkpoint, written by its own generator."""
    out = tmp / "m2fp_seed3"
    cmd = [sys.executable, str(reference / "gen_checkpoint.py"), "--keys", str(reference / "state_dict_keys.tsv")]
    cmd += ["--config", str(reference / "configuration.json"), "--seed", "3", "--out", str(out)]
    subprocess.run(cmd, check=True)
    return out


def run(device: str, model: Path, out: Path, steps: int, batch: int, crop: int) -> dict:
    """``steps`` loop steps on ``device``: losses, median step time, peak CUDA memory."""
    records = samples()
    settings = _settings(model, out, steps, crop, batch, 12544)
    torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    state = run_loop(settings, records, ["light", "medium", "dark", "dark"], device=device)
    times = [h["time"] for h in state.history]
    gaps = [b - a for a, b in zip(times, times[1:])]
    return {
        "device": device,
        "batch": batch,
        "crop": crop,
        "wall_s": round(time.time() - t0, 2),
        "losses": [round(h["loss"], 5) for h in state.history],
        "median_step_s": round(statistics.median(gaps), 4) if gaps else None,
        "peak_cuda_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference", type=Path, default=REPO.parent / "shared" / "reference")
    ap.add_argument("--cpu-steps", type=int, default=2)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--crop", type=int, default=512)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--no-tf32", action="store_true", help="float32 convolutions and matmuls on CUDA")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_train_gpu: no CUDA device")
    if a.no_tf32:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_num_threads(a.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_gpu_"))
    model = model_dir(a.reference, tmp)
    print(json.dumps({"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "tf32": not a.no_tf32}))
    cpu = run("cpu", model, tmp / "cpu", a.cpu_steps, 1, a.crop)
    print(json.dumps(cpu), flush=True)
    cuda = run("cuda", model, tmp / "cuda1", a.cpu_steps, 1, a.crop)
    diff = max(abs(x - y) / abs(x) for x, y in zip(cpu["losses"], cuda["losses"]))
    print(json.dumps({**cuda, "max_rel_loss_diff_vs_cpu": round(diff, 7)}), flush=True)
    for batch in (1, 4):
        print(json.dumps(run("cuda", model, tmp / f"cuda_b{batch}", a.steps, batch, a.crop)), flush=True)


if __name__ == "__main__":
    main()
