"""Fixtures of the review tests: an isolated FiftyOne home/database and a REAL job output.

FiftyOne reads its config (``~/.fiftyone``, the database dir) when first imported, so the
``fo_home`` fixture (autouse, package scope) points HOME and ``FIFTYONE_DATABASE_DIR`` at a tmp
dir before any test here imports it; the tests never touch a user's database. Subprocesses get
the same environment from :func:`fo_env`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.fixture(scope="package", autouse=True)
def fo_home(tmp_path_factory):
    """An isolated HOME + FiftyOne database for the in-process FiftyOne of these tests."""
    home = tmp_path_factory.mktemp("fo_home")
    if "fiftyone" in sys.modules:
        import fiftyone as fo

        assert Path(fo.config.database_dir).resolve() == (home / "db").resolve(), (
            "fiftyone was imported before the review tests isolated it; it would use the user's database"
        )
    mp = pytest.MonkeyPatch()
    for k, v in fo_env(home).items():
        if k.startswith("FIFTYONE_") or k == "HOME":
            mp.setenv(k, v)
    mp.delenv("FIFTYONE_DATABASE_URI", raising=False)
    yield home
    mp.undo()


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


@pytest.fixture(scope="package")
def job_output(tmp_path_factory, tiny_model_dir, fo_home) -> Path:
    """A small REAL job output: `m2fp-batch run` with the tiny model on 3 photos + 1 corrupt file."""
    root = tmp_path_factory.mktemp("review_job")
    expected = write_photos(root / "images")
    run_job(tiny_model_dir, root / "images", root / "out", fo_home)
    import pyarrow.parquet as pq

    rows = pq.read_table(root / "out" / "shard-00000.parquet", columns=["uri", "status"]).to_pylist()
    assert {Path(r["uri"]).name: r["status"] for r in rows} == expected
    return root / "out"


@pytest.fixture()
def fresh_output(job_output, tmp_path) -> Path:
    """A private copy of the job output (tests that write masks or edit do not share state)."""
    dst = tmp_path / "out"
    shutil.copytree(job_output, dst)
    return dst
