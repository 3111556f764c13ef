"""``parse`` and ``run`` from the image, against the same commands on the host; user errors inside the
container are one sentence and exit 2. The model is mounted read-only at /models/m2fp, as the deploy
files mount it; inputs and outputs are mounted at their host paths, so rows name the same files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from container import MODEL_MOUNT, REPO, shared_dir

from m2fp_batch.settings import EngineSettings

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(1800)]

# the columns a row takes from where the model is mounted (--model is a label setting) or the clock
PLACE_OR_CLOCK = ("model", "config_hash", "timings")
JOB_FLAGS = ("--shard-size", "2", "--batch-size", "1", "--num-cpus", "2", "--set", "progress_interval_s=2")


def _host(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "m2fp_batch.cli", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _one_sentence(res: subprocess.CompletedProcess, command: str) -> str:
    """The user-error contract: exit 2, one line on stderr naming the subcommand, no traceback."""
    assert res.returncode == 2, (res.returncode, res.stdout[-2000:], res.stderr[-4000:])
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith(f"m2fp-batch {command}: ")]
    assert len(lines) == 1, res.stderr[-4000:]
    assert "Traceback" not in res.stderr + res.stdout, res.stderr[-4000:]
    return lines[0]


def test_parse_in_the_container_equals_the_host(image, mounted_model, photos, tmp_path):
    out = shared_dir(tmp_path / "container", writable=True)
    photo = photos / "grace_hopper.jpg"
    res = image.run(
        "parse", str(photo), "--model", MODEL_MOUNT, "--out", str(out), "--raw", str(out / "raw.npz"),
        mounts=(f"{mounted_model}:{MODEL_MOUNT}:ro", f"{photos}:{photos}:ro", f"{out}:{out}"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-4000:]
    host = tmp_path / "host"
    res_host = _host(
        "parse", str(photo), "--model", str(mounted_model), "--out", str(host), "--raw", str(host / "raw.npz")
    )
    assert res_host.returncode == 0, res_host.stderr[-4000:]
    mine, theirs = np.load(out / "raw.npz"), np.load(host / "raw.npz")
    assert (mine["img0_semantic_label"] > 0).any(), "a real photo: the tiny model finds people"
    np.testing.assert_array_equal(mine["img0_semantic_label"], theirs["img0_semantic_label"])
    assert sorted(mine.files) == sorted(theirs.files)
    for key in mine.files:
        np.testing.assert_array_equal(mine[key], theirs[key], err_msg=key)
    for kind in ("parse", "overlay", "people"):
        assert (out / f"grace_hopper_{kind}.png").read_bytes() == (host / f"grace_hopper_{kind}.png").read_bytes()
    info = json.loads((out / "summary.json").read_text())["model"]
    assert info["model"] == MODEL_MOUNT and info["model_dir"] == MODEL_MOUNT
    assert info["checkpoint_sha256"] == json.loads((host / "summary.json").read_text())["model"]["checkpoint_sha256"]
    # the image's code hashes the label settings as the host's does
    code = f"from m2fp_batch.settings import EngineSettings; print(EngineSettings(model={MODEL_MOUNT!r}).label_hash())"
    res = image.run("-c", code, entrypoint="python")
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == EngineSettings(model=MODEL_MOUNT).label_hash()


def test_run_in_one_container_on_its_local_ray_equals_the_host(image, mounted_model, photos, tmp_path):
    out = shared_dir(tmp_path / "container", writable=True) / "labels"
    res = image.run(
        "run", "--input", str(photos), "--out", str(out), "--model", MODEL_MOUNT, *JOB_FLAGS,
        mounts=(f"{mounted_model}:{MODEL_MOUNT}:ro", f"{photos}:{photos}:ro", f"{out.parent}:{out.parent}"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-4000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["complete"] and summary["rows"] == 4, summary
    host = tmp_path / "host"
    res_host = _host("run", "--input", str(photos), "--out", str(host), "--model", str(mounted_model), *JOB_FLAGS)
    assert res_host.returncode == 0, res_host.stderr[-4000:]
    mine = {r["uri"]: r for r in pq.read_table(out).to_pylist()}
    theirs = {r["uri"]: r for r in pq.read_table(host).to_pylist()}
    assert sorted(mine) == sorted(theirs) == sorted(str(p) for p in photos.iterdir())
    assert all(r["status"] == "ok" for r in mine.values()), [r["error"] for r in mine.values()]
    assert sum(r["num_persons"] for r in mine.values()) > 0
    for uri, row in mine.items():
        assert {k: v for k, v in row.items() if k not in PLACE_OR_CLOCK} == {
            k: v for k, v in theirs[uri].items() if k not in PLACE_OR_CLOCK
        }, uri
        assert row["model"] == MODEL_MOUNT
    assert {r["config_hash"] for r in mine.values()} == {EngineSettings(model=MODEL_MOUNT).label_hash()}
    run = json.loads((out / "_run.json").read_text())["run"]
    assert run["ray_address"] == "local" and sum(run["model_loads_per_node"].values()) >= 1


@pytest.mark.parametrize(
    "case",
    ["no model mounted", "unwritable output", "wrong Ray address", "wrong flag"],
)
def test_user_errors_in_the_container_are_one_sentence_and_exit_2(image, mounted_model, photos, tmp_path, case):
    model = (f"{mounted_model}:{MODEL_MOUNT}:ro",)
    inputs = (f"{photos}:/data/in:ro",)
    if case == "no model mounted":
        res = image.run("parse", "/data/in/astronaut.jpg", "--model", MODEL_MOUNT, "--out", "/tmp/out", mounts=inputs)
        assert MODEL_MOUNT in _one_sentence(res, "parse")
    elif case == "unwritable output":
        ro = shared_dir(tmp_path / "ro")
        res = image.run(
            "run", "--input", "/data/in", "--out", "/data/out/labels", "--model", MODEL_MOUNT, *JOB_FLAGS,
            mounts=(*model, *inputs, f"{ro}:/data/out:ro"), timeout=300,
        )  # fmt: skip
        assert "/data/out" in _one_sentence(res, "run")
    elif case == "wrong Ray address":
        res = image.run(
            "run", "--input", "/data/in", "--out", "/tmp/labels", "--model", MODEL_MOUNT, "--address", "127.0.0.1:1",
            mounts=(*model, *inputs), timeout=300,
        )  # fmt: skip
        assert "127.0.0.1:1" in _one_sentence(res, "run")
    else:
        res = image.run("serve", "--model", MODEL_MOUNT, "--no-such-flag", mounts=model)
        assert res.returncode == 2 and "unrecognized arguments: --no-such-flag" in res.stderr
        assert "Traceback" not in res.stderr
