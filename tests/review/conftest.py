"""Fixtures of the review tests: an isolated FiftyOne home/database and a REAL job output.

FiftyOne reads its config (``~/.fiftyone``, the database dir) when first imported, so the
``fo_home`` fixture (autouse, package scope) points HOME and ``FIFTYONE_DATABASE_DIR`` at a tmp
dir before any test here imports it; the tests never touch a user's database. Subprocesses get
the same environment from :func:`fo_env`.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from .fo_helpers import fo_env, run_job, write_photos, write_videos  # noqa: E402


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


@pytest.fixture(scope="package")
def video_job_output(tmp_path_factory, tiny_model_dir, fo_home) -> Path:
    """A REAL job output over photos and videos (tiny model, 1 frame a second): 3 photos + 1 corrupt
    file, and the videos of :func:`.fo_helpers.write_videos`."""
    root = tmp_path_factory.mktemp("review_video_job")
    write_photos(root / "in")
    write_videos(root / "in" / "videos")
    run_job(tiny_model_dir, root / "in", root / "out", fo_home)
    return root / "out"


@pytest.fixture()
def fresh_output(job_output, tmp_path) -> Path:
    """A private copy of the job output (tests that write masks or edit do not share state)."""
    dst = tmp_path / "out"
    shutil.copytree(job_output, dst)
    return dst
