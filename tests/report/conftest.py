"""A small REAL job output for the report tests: ``m2fp-batch run`` with the tiny model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

# Images of the job: two real photos and one darkened (mean V < 50: brightened x1.5 when enabled);
# plus a corrupt file, which the job turns into an error row.
JOB_IMAGES = {
    "astronaut": lambda: data.astronaut(),
    "coffee": lambda: data.coffee(),
    "astronaut_dark": lambda: (data.astronaut() * 0.25).astype(np.uint8),
}
BRIGHTNESS_SETTING = "adaptive_brightness=true"


def run_job(images_dir: Path, out: Path, model_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    cmd = [sys.executable, "-m", "m2fp_batch.cli", "run", "--input", str(images_dir), "--output", str(out)]
    cmd += ["--model", str(model_dir), "--num-cpus", "2", *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def job_output(tmp_path_factory, tiny_model_dir) -> Path:
    """``m2fp-batch run`` over three photos with adaptive brightness on; the output directory."""
    root = tmp_path_factory.mktemp("report_job")
    images = root / "images"
    images.mkdir()
    for name, make in JOB_IMAGES.items():
        Image.fromarray(make()).save(images / f"{name}.png")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    out = root / "out"
    proc = run_job(images, out, tiny_model_dir, "--set", BRIGHTNESS_SETTING)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out
