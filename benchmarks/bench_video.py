"""Video decoding speed: how many frames a second m2fp_batch.video decodes and samples, on 1 thread.

    .venv/bin/python benchmarks/bench_video.py

Encodes a 10 s H.264 clip (30 fps; a pan over scikit-image's astronaut photo) at two sizes, then
decodes it with :func:`m2fp_batch.video.sample_frames` at 1 frame a second (the job's default) and at
every frame. "decoded frames/s" counts every frame FFmpeg decodes (sampling still decodes them all:
H.264 frames depend on each other); "sampled frames/s" the frames handed on as rows. Compare the
latter with the labelled images/s of docs/performance.md to see which one bounds a video job. The
RSS growth shows that decoding holds a few frames (one 1080p RGB frame is 6 MB), not the video.

    .venv/bin/python benchmarks/bench_video.py --job --model /tmp/m2fp_seed3 [--seconds 20] [--cpus 2]

The same comparison through the command users run: ``m2fp-batch run`` on a directory with one
1080p clip of ``--seconds`` s at 1 frame a second, on a local Ray of ``--cpus`` CPUs. From the
output of that one run: decoded frames/s (the read stage's seconds per sampled frame, every frame
between two samples decoded, from the frame rows' ``timings.read_s``) against labelled frames/s
(rows over the job's steady-state seconds, ``_run.json``), and which one bounds the job.
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

os.environ.setdefault("OMP_NUM_THREADS", "1")

import av  # noqa: E402
import numpy as np  # noqa: E402
import skimage.data  # noqa: E402
from PIL import Image  # noqa: E402

from m2fp_batch.video import SampledFrame, Sampling, sample_frames  # noqa: E402

SECONDS, FPS = 10, 30


def _encode(path: Path, size: tuple[int, int], seconds: int = SECONDS) -> None:
    photo = Image.fromarray(skimage.data.astronaut())
    w, h = size
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(seconds * FPS):
            x0 = int(200 * i / (seconds * FPS))
            frame = np.asarray(photo.crop((x0, 100, x0 + 312, 100 + 312 * h // w)).resize(size))
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _rss_mb() -> float:
    """The process's resident memory now (Linux /proc), in MB."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _decode(path: Path, sampling: Sampling) -> tuple[float, int, float]:
    """(seconds, sampled frames, largest growth of resident memory during the decode in MB)."""
    rss0, peak, n = _rss_mb(), 0.0, 0
    t0 = time.perf_counter()
    for x in sample_frames(str(path), sampling, 10**9):
        n += isinstance(x, SampledFrame)
        peak = max(peak, _rss_mb() - rss0)
    return time.perf_counter() - t0, n, peak


def _job(model: str, seconds: int, cpus: int) -> None:
    """Decode against label rates from one ``m2fp-batch run`` over a 1080p clip (see the module)."""
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in", Path(tmp) / "out"
        src.mkdir()
        _encode(src / "clip.mp4", (1920, 1080), seconds)
        cmd = [sys.executable, "-m", "m2fp_batch.cli", "run", "--input", str(src), "--out", str(out), "--model", model]
        t0 = time.perf_counter()
        subprocess.run([*cmd, "--num-cpus", str(cpus), "--video-fps", "1"], check=True, capture_output=True)
        wall = time.perf_counter() - t0
        rows = pq.read_table(out, columns=["frame_index", "timings"]).to_pylist()
        run = json.loads((out / "_run.json").read_text())["run"]
    read = [r["timings"]["read_s"] for r in rows if r["frame_index"] is not None]
    decoded = len(read) / sum(read)  # sampled frames a second one read task delivers
    steady = run.get("steady_images_per_s") or run["images_per_s"]
    print(f"m2fp-batch run, 1080p {seconds} s clip at 1 frame/s, {cpus} CPUs: {len(rows)} rows in {wall:.0f} s")
    print(f"decoded (sampled) frames/s, one read task: {decoded:.2f}  ({decoded * FPS:.0f} decoded frames/s)")
    print(f"labelled frames/s, the job (steady state): {steady:.3f}")
    print(f"decode / label: {decoded / steady:.1f}x: {'labelling' if decoded > steady else 'decoding'} bounds the job")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--job", action="store_true", help="measure through m2fp-batch run (needs --model)")
    ap.add_argument("--model", help="a model dir (e.g. tests/tiny_model.py write_reference_model)")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--cpus", type=int, default=2)
    args = ap.parse_args()
    if args.job:
        if not args.model:
            ap.error("--job needs --model")
        _job(args.model, args.seconds, args.cpus)
        return 0
    print(
        "| frame size | sampling | sampled frames | decoded frames/s | sampled frames/s | largest RSS growth while decoding (MB) |"
    )
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:  # each size decoded once before timing (FFmpeg start-up)
        for size in ((640, 360), (1920, 1080)):
            path = Path(tmp) / f"{size[0]}.mp4"
            _encode(path, size)
            _decode(path, Sampling(max_frames=1))
            for name, sampling in (("1 frame/s", Sampling(fps=1.0)), ("every frame", Sampling(every_nth=1))):
                secs, n, grown = _decode(path, sampling)
                print(
                    f"| {size[0]}x{size[1]} | {name} | {n} | {SECONDS * FPS / secs:.0f} | {n / secs:.1f} | {grown:.0f} |"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
