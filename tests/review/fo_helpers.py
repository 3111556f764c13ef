"""Helpers of the review tests (environment of FiftyOne subprocesses, the photos, the real job)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
M2FP_BATCH = [sys.executable, "-m", "m2fp_batch.cli"]


def fo_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment for a FiftyOne process whose home and bundled database live under ``home``."""
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        FIFTYONE_DO_NOT_TRACK="true",
        FIFTYONE_DATABASE_VALIDATION="false",
        FIFTYONE_DATABASE_DIR=str(home / "db"),
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    env.pop("FIFTYONE_DATABASE_URI", None)
    env.update(extra)
    return env


def write_photos(directory: Path) -> dict[str, str]:
    """3 real photos and one corrupt file; returns file name -> expected status."""
    import matplotlib.cbook
    from PIL import Image
    from skimage import data

    directory.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data.astronaut()).save(directory / "astronaut.png")
    Image.fromarray(data.coffee()).resize((300, 200)).save(directory / "coffee.jpg", quality=90)
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = f.read()
    (directory / "grace_hopper.jpg").write_bytes(hopper)
    (directory / "corrupt.jpg").write_bytes(hopper[: len(hopper) // 3])
    return {"astronaut.png": "ok", "coffee.jpg": "ok", "grace_hopper.jpg": "ok", "corrupt.jpg": "error"}


def run_job(tiny_model_dir: Path, images: Path, out: Path, home: Path) -> subprocess.CompletedProcess:
    """``m2fp-batch run`` (the real Ray job, tiny model) on ``images``."""
    cmd = [*M2FP_BATCH, "run", "--input", str(images), "--output", str(out), "--model", str(tiny_model_dir)]
    proc = subprocess.run(cmd, env=fo_env(home), capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, f"job failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


# a variable frame rate: frame presentation times in ms (sampled at 1 frame/s: frames 0, 4, 7, 9)
VFR_PTS_MS = [0, 100, 150, 900, 1000, 1050, 1100, 2300, 2400, 3100]


def write_videos(directory: Path) -> dict[str, Path]:
    """Real videos (PyAV, pans over scikit-image photos): a constant and a variable frame rate, a
    rotated phone video and a truncated one, a photo named ``.mov`` and a text file named ``.webm``."""
    import skimage.data
    from PIL import Image
    from video.videos import pan_frames, write_video

    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "clip": write_video(directory / "clip.mp4", pan_frames(30, (320, 240)), fps=10),  # 3 s
        "vfr": write_video(directory / "vfr.mkv", pan_frames(len(VFR_PTS_MS)), pts_ms=VFR_PTS_MS),
        "phone": write_video(directory / "phone.mp4", pan_frames(10), fps=10, rotation=90),
    }
    truncated = write_video(directory / "truncated.mkv", pan_frames(30, photo=skimage.data.chelsea()), fps=10)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size * 6 // 10])
    files["truncated"] = truncated
    Image.fromarray(skimage.data.coffee()).resize((160, 120)).save(directory / "photo.png", format="PNG")
    files["photo_as_mov"] = (directory / "photo.png").rename(directory / "photo_named.mov")
    files["text"] = directory / "text.webm"
    files["text"].write_bytes(b"this is a text file, not a video\n" * 20)
    return files
