"""Training speed as users run it, and a full-size step against the machine's peak.

    python benchmarks/bench_train.py                       # both parts below
    python benchmarks/bench_train.py --part cli --rounds 2 --steps 8
    python benchmarks/bench_train.py --part full --steps 2   # flags as in train: --crop, --batch
    python benchmarks/bench_train.py --part workers --model /tmp/m2fp_seed3 --crop 512 --rounds 1

``cli``: the tiny test config at 256 px, batch 2, 12,544 points per mask. Each round runs the
real ``m2fp-batch train`` command with ``--workers 1``, then ``--workers 2``, and beside each,
started when the command logs its first step, the bare loop (``run_loop`` in a plain process):
the two share the machine's other load, which on a shared VM swings more between minutes than
any effect measured here. Speed comes from the steps' own end times (``training.json``'s
``losses[i].time``; the bare loop's history), batch / median step over the steps where both
ran, so Ray's start-up, the model load and the final save are not counted. Prints CLI/bare
per round and the median, and workers 2 against 1 (each against its own bare loop).

``workers``: the command alone with ``--workers 1`` then ``--workers 2``, round after round, on
the tiny config or ``--model DIR`` (a full-size model dir): images/s from the median step, the
first excluded; prints workers 2 / workers 1 (the default follows the faster).

``full``: the full-size architecture (the parity fixture's seed-3 checkpoint), a 512-px
batch-1 step, in a fresh process: the fp32 matmul peak (2048^2 mm, before and after), the
forward FLOPs (FlopCounterMode, training forward with the auxiliary outputs), the step time
by stage (forward by module, matching, point sampling, backward by module, optimiser) and
efficiency = 3 x forward FLOPs / (step time x peak), plus the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MIN_OVERLAP_S = 20.0  # the shortest common window a paired comparison is made on
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def _settings(model: Path, out: Path, steps: int, short_edge: int, batch: int, points: int):
    from m2fp_batch.train.config import AugmentSettings, LossSettings
    from m2fp_batch.train.settings import TrainSettings

    return TrainSettings(
        data=(),
        init_model=str(model),
        out=str(out),
        steps=steps,
        batch_size=batch,
        checkpoint_every=10**9,
        augment=AugmentSettings(short_edge=short_edge),
        loss=LossSettings(num_points=points),
    )


def images_per_s(times: list[float], batch: int, window: tuple[float, float] | None = None) -> float:
    """Images/s from the steps' end times: batch / the median step, the first (warm-up) excluded,
    only steps inside ``window`` when given (the median: on a shared machine one step can stall)."""
    steps = [(b, b - a) for a, b in zip(times, times[1:])]
    inside = [d for end, d in steps if window is None or window[0] <= end - d and end <= window[1]]
    return batch / statistics.median(inside or [d for _, d in steps])


def bare_child(a) -> dict:
    """The loop alone, in this process (no Ray): its steps' end times."""
    import torch
    from tiny_model import write_tiny_model

    from m2fp_batch.train.loop import run_loop
    from tests.train.helpers import samples

    torch.set_num_threads(a.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    model = write_tiny_model(tmp / "model")
    recs = samples()
    settings = _settings(model, tmp / "out", a.steps, a.crop, a.batch, a.num_points)
    return {"times": [h["time"] for h in run_loop(settings, recs, ["light"] * len(recs)).history]}


def train_command(model: Path, data: Path, out: Path, a, workers: int) -> tuple[list[str], dict[str, str]]:
    """The ``m2fp-batch train`` command line of a run (no checkpoints before the end) and its environment."""
    cmd = [sys.executable, "-m", "m2fp_batch.cli", "train", "--data", str(data), "--model", str(model)]
    cmd += ["--out", str(out), "--steps", str(a.steps), "--batch", str(a.batch), "--crop", str(a.crop)]
    cmd += ["--num-points", str(a.num_points), "--workers", str(workers), "--checkpoint-every", str(10**6)]
    return cmd, {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}


def paired_run(model: Path, data: Path, out: Path, a, workers: int) -> dict:
    """The real ``m2fp-batch train`` command and, once its first step is logged, the bare loop in
    a second process at the same time: both share whatever else loads the machine, and each is
    timed on its steps within the window where both were stepping."""
    cmd, env = train_command(model, data, out, a, workers)
    log = out.with_suffix(".log")
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        while proc.poll() is None and f"step 1/{a.steps}" not in log.read_text(errors="replace"):
            time.sleep(0.5)
        bare = _child(a, "bare")["times"]
        proc.wait()
    if proc.returncode:
        raise RuntimeError(f"m2fp-batch train failed:\n{log.read_text()[-3000:]}")
    cli = [h["time"] for h in json.loads((out / "training.json").read_text())["losses"]]
    window = (max(bare[0], cli[0]), min(bare[-1], cli[-1]))
    if window[1] - window[0] < MIN_OVERLAP_S:  # the command ended before the bare loop got going
        raise RuntimeError(f"--workers {workers}: the two runs did not overlap; raise --steps")
    cli_rate, bare_rate = images_per_s(cli, a.batch, window), images_per_s(bare, a.batch, window)
    return {"cli_images_per_s": round(cli_rate, 3), "bare_images_per_s": round(bare_rate, 3),
            "cli_over_bare": round(cli_rate / bare_rate, 3), "overlap_s": round(window[1] - window[0], 1)}  # fmt: skip


def run_cli_part(a) -> dict:
    """Rounds of (CLI --workers 1 with a bare loop beside it), (CLI --workers 2 likewise)."""
    from tiny_model import write_tiny_model

    from tests.train.helpers import samples, write_cihp_dir

    tmp = Path(tempfile.mkdtemp(prefix="bench_train_cli_"))
    model = write_tiny_model(tmp / "model")
    data = write_cihp_dir(tmp / "cihp", samples())
    rounds = []
    for r in range(a.rounds):
        w1 = paired_run(model, data, tmp / f"w1_{r}", a, 1)
        w2 = paired_run(model, data, tmp / f"w2_{r}", a, 2)
        rounds.append({"workers_1": w1, "workers_2": w2, "load_1min": os.getloadavg()[0]})
        print(json.dumps(rounds[-1]), flush=True)
    ratio = [x["workers_1"]["cli_over_bare"] for x in rounds]
    w2_w1 = [x["workers_2"]["cli_over_bare"] / x["workers_1"]["cli_over_bare"] for x in rounds]
    return {
        "setting": f"tiny config, {a.crop} px, batch {a.batch}, {a.num_points} points, {a.steps} steps",
        "cli_over_bare_per_round": ratio,
        "cli_over_bare_median": round(statistics.median(ratio), 3),
        "workers_2_over_1_per_round": [round(x, 3) for x in w2_w1],
        "workers_2_over_1_median": round(statistics.median(w2_w1), 3),
    }


def command_steps(model: Path, data: Path, out: Path, a, workers: int) -> list[float]:
    """The real ``m2fp-batch train`` alone: its steps' end times (``training.json``)."""
    cmd, env = train_command(model, data, out, a, workers)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"m2fp-batch train failed:\n{done.stderr[-3000:]}")
    return [h["time"] for h in json.loads((out / "training.json").read_text())["losses"]]


def run_workers_part(a) -> dict:
    """``--workers 1`` and ``--workers 2`` of the real command, alone and interleaved (w1 w2 per
    round), on the tiny config or, with ``--model``, a full-size model dir: median step."""
    from tiny_model import write_tiny_model

    from tests.train.helpers import samples, write_cihp_dir

    tmp = Path(tempfile.mkdtemp(prefix="bench_train_workers_"))
    model = Path(a.model) if a.model else write_tiny_model(tmp / "model")
    data = write_cihp_dir(tmp / "cihp", samples())
    rounds = []
    for r in range(a.rounds):
        rates = {w: images_per_s(command_steps(model, data, tmp / f"w{w}_{r}", a, w), a.batch) for w in (1, 2)}
        rounds.append({"workers_1_images_per_s": round(rates[1], 4), "workers_2_images_per_s": round(rates[2], 4),
                       "workers_2_over_1": round(rates[2] / rates[1], 3), "load_1min": os.getloadavg()[0]})  # fmt: skip
        print(json.dumps(rounds[-1]), flush=True)
    return {
        "setting": f"{a.model or 'tiny config'}, {a.crop} px, batch {a.batch}, {a.num_points} points, {a.steps} steps",
        "rounds": rounds,
        "workers_2_over_1_median": statistics.median(x["workers_2_over_1"] for x in rounds),
    }


class StageClock:
    """Wall time of a training step by stage, from hooks (nothing in the loop changes).

    Forward by module: forward pre/post hooks. Backward by module: the last gradient to
    reach a module's outputs ends the backward of everything after it; the last parameter
    gradient ends the backward. Matching and point sampling: the criterion's functions
    wrapped. Optimiser: from the end of backward (clipping included) to the end of ``step``.
    """

    MODULES = ("backbone", "pixel_decoder", "transformer_decoder")

    def __init__(self, model, optimizer) -> None:
        self.t: dict[str, float] = {}
        self.sums: dict[str, float] = defaultdict(float)
        head = model.sem_seg_head
        for name, mod in zip(self.MODULES, (model.backbone, head.pixel_decoder, head.predictor)):
            mod.register_forward_pre_hook(lambda *_, n=name: self._mark(f"{n}_fwd_start"))
            mod.register_forward_hook(lambda _m, _i, out, n=name: self._watch_outputs(n, out))
        for p in model.parameters():
            if p.requires_grad:
                p.register_post_accumulate_grad_hook(lambda _p: self._mark("backward_end"))
        optimizer.register_step_post_hook(lambda *_: self._mark("optimizer_end"))
        self._wrap_criterion()

    def _mark(self, key: str) -> None:
        self.t[key] = time.perf_counter()

    def _watch_outputs(self, name: str, out) -> None:
        self._mark(f"{name}_fwd_end")
        tensors = list(out.values()) if isinstance(out, dict) else list(out)
        flat = [x for t in tensors for x in (t if isinstance(t, list | tuple) else [t])]
        for x in flat:
            if getattr(x, "requires_grad", False):
                x.register_hook(lambda g, n=name: self._mark(f"{n}_grad_in"))

    def _wrap_criterion(self) -> None:
        from m2fp_batch.train import criterion

        for attr, stage in (("match", "matching"), ("uncertain_points", "point_sampling")):
            setattr(criterion, attr, self._timed(getattr(criterion, attr), stage))
        criterion.point_sample = self._timed(criterion.point_sample, "point_sampling")

    def _timed(self, fn, stage: str):
        def run(*args, **kw):
            t = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                self.sums[stage] += time.perf_counter() - t

        return run

    def step(self, fn) -> dict[str, float]:
        """Run ``fn`` (one training step) and return its stages in seconds."""
        self.t.clear()
        self.sums.clear()
        t0 = time.perf_counter()
        fn()
        t, end = self.t, time.perf_counter()
        loss_start = t["transformer_decoder_fwd_end"]
        bwd_start = loss_start + self.sums["matching"] + self.sums["point_sampling"]
        stages = {f"forward_{n}": t[f"{n}_fwd_end"] - t[f"{n}_fwd_start"] for n in self.MODULES}
        stages["matching"] = self.sums["matching"]
        stages["point_sampling_loss"] = self.sums["point_sampling"]
        # backward: loss terms and transformer decoder until the pixel decoder's outputs get
        # their last gradient, then the pixel decoder until the backbone's, then the backbone
        stages["loss_rest_and_backward_transformer_decoder"] = t["pixel_decoder_grad_in"] - bwd_start
        stages["backward_pixel_decoder"] = t["backbone_grad_in"] - t["pixel_decoder_grad_in"]
        stages["backward_backbone"] = t["backward_end"] - t["backbone_grad_in"]
        stages["clip_and_optimizer"] = t["optimizer_end"] - t["backward_end"]
        stages["other"] = (end - t0) - sum(stages.values())
        stages["step"] = end - t0
        return stages


def full_child(a) -> dict:
    """A full-size training step by stage, against the matmul peak measured around it."""
    import torch
    from bench_inference import matmul_peak
    from tiny_model import write_reference_model
    from torch.utils.flop_counter import FlopCounterMode

    from m2fp_batch.train.augment import flip_permutation
    from m2fp_batch.train.batch import prepare_batch
    from m2fp_batch.train.loop import make_state, train_step
    from m2fp_batch.train.model_io import load_trainable
    from tests.train.helpers import samples

    peak_before = matmul_peak(a.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_full_"))
    model_dir = write_reference_model(tmp / "model")
    settings = _settings(model_dir, tmp / "out", a.steps, a.crop, a.batch, a.num_points)
    trainable = load_trainable(model_dir)
    model, cfg = trainable.net, trainable.config
    state = make_state(settings, model)
    recs, flip = samples(), flip_permutation(cfg.classes)

    def batch(step: int):
        pos = list(range(a.batch))
        picked = [recs[(step + p) % len(recs)] for p in pos]
        return prepare_batch(picked, pos, step, 0, settings.augment, settings.skin, flip, cfg.num_parsing,
                             model.pixel_mean, model.pixel_std)  # fmt: skip

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(batch(0).images, keep_aux=True)
    flops = fc.get_total_flops()
    train_step(state, settings, batch(0), a.batch)  # warm-up
    clock = StageClock(model, state.optimizer)
    runs = [clock.step(lambda s=s: train_step(state, settings, batch(s), a.batch)) for s in range(1, a.steps)]
    peak = max(peak_before, matmul_peak(a.threads))
    stages = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    ideal = 3 * flops / peak
    return {
        "setting": f"full size, {a.crop} px crop, batch {a.batch}, {a.num_points} points",
        "forward_gflops": round(flops / 1e9, 1),
        "matmul_peak_gflops": round(peak / 1e9, 1),
        "step_s": round(stages["step"], 2),
        "ideal_step_s": round(ideal, 2),
        "efficiency": round(ideal / stages["step"], 3),
        "stage_s": {k: round(v, 3) for k, v in stages.items() if k != "step"},
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "threads": a.threads,
    }


def _child(a, part: str) -> dict:
    cmd = [sys.executable, __file__, "--child", part, "--steps", str(max(2, a.steps))]
    cmd += ["--crop", str(a.crop), "--batch", str(a.batch)]
    cmd += ["--threads", str(a.threads), "--num-points", str(a.num_points)]
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["cli", "full", "workers"], nargs="+", default=["cli", "full"])
    ap.add_argument("--model", help="workers: a model dir (default: the tiny config)")
    ap.add_argument("--rounds", type=int, default=2, help="cli: interleaved rounds")
    ap.add_argument("--steps", type=int, default=None, help="steps per run (default: cli 12, full 2)")
    ap.add_argument("--crop", type=int, default=None, help="training crop (train --crop); default: cli 256, full 512")
    ap.add_argument("--batch", type=int, default=None, help="images per step (train --batch); default: cli 2, full 1")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--num-points", type=int, default=12544, help="points per mask (12544 = upstream)")
    ap.add_argument("--child", choices=["bare", "full"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        import torch

        torch.set_num_threads(a.threads)
        print(json.dumps((bare_child if a.child == "bare" else full_child)(a)))
        return
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    flags = next((x for x in cpu.splitlines() if x.startswith("Flags")), "")
    name = next((x.split(":", 1)[1].strip() for x in cpu.splitlines() if x.startswith("Model name")), "?")
    print(f"cpu: {name}, {'AVX-512' if 'avx512f' in flags else 'AVX2'}, {os.cpu_count()} cores")
    print("load average at start:", os.getloadavg())
    defaults = {"cli": (12, 256, 2), "full": (2, 512, 1), "workers": (6, 256, 2)}
    for part in a.part:
        steps, edge, batch = defaults[part]
        b = argparse.Namespace(**{**vars(a), "steps": a.steps or steps, "crop": a.crop or edge,
                                  "batch": a.batch or batch})  # fmt: skip
        result = {"cli": run_cli_part, "workers": run_workers_part}.get(part, lambda b: _child(b, "full"))(b)
        print(json.dumps({part: result, "load_1min_after": os.getloadavg()[0]}, indent=1), flush=True)
        if part == "workers":
            print(f"--workers 2 / --workers 1 (the command alone): {result['workers_2_over_1_median']:.3f}")
        elif part == "cli":
            print(f"CLI/bare images/s: {result['cli_over_bare_median']:.3f}; "
                  f"--workers 2 / --workers 1: {result['workers_2_over_1_median']:.3f}")  # fmt: skip
        else:
            print(f"full-size step efficiency: {result['efficiency']:.3f} ({result['step_s']} s/step, ideal "
                  f"{result['ideal_step_s']} s at {result['matmul_peak_gflops']} GFLOP/s)")  # fmt: skip


if __name__ == "__main__":
    main()
