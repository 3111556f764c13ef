"""The job across two Ray nodes on one machine: a head and a second ``ray start --address``
node, 1 CPU each. Actors run on both nodes, each node loads the model once, and every input
is labelled exactly once."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cluster import ray_head, ray_worker
from PIL import Image

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]


def _photos(root: Path, n: int) -> list[str]:
    """Real photos (scikit-image), JPEG, several crops."""
    from skimage import data

    srcs = [data.astronaut(), data.coffee(), data.chelsea()]
    root.mkdir(parents=True)
    for k in range(n):
        im = srcs[k % len(srcs)]
        frac = (1.0, 0.7, 0.5)[k // len(srcs) % 3]
        crop = im[: int(im.shape[0] * frac), : int(im.shape[1] * frac)]
        buf = io.BytesIO()
        Image.fromarray(crop).save(buf, "JPEG", quality=85)
        (root / f"{k:03d}.jpg").write_bytes(buf.getvalue())
    return sorted(str(p) for p in root.iterdir())


def test_two_nodes_one_model_per_node_exactly_once(tmp_path, tiny_model_dir):
    old = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "token"
    try:
        with ray_head(num_cpus=1, multi_node=True) as (gcs, _, env, _), ray_worker(gcs, env, num_cpus=1):
            uris = _photos(tmp_path / "in", 8)
            out = tmp_path / "out"
            cmd = [
                sys.executable, "-m", "m2fp_batch.cli", "run", "--input", str(tmp_path / "in"),
                "--output", str(out), "--model", str(tiny_model_dir), "--address", gcs,
                "--shard-size", "2", "--batch-size", "1", "--set", "cpus_per_actor=1",
                "--set", "progress_interval_s=2",
            ]  # fmt: skip
            # no pool settings: on a fixed cluster the job starts every actor it fits, all at once
            res = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    finally:
        if old is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = old
    assert res.returncode == 0, res.stderr[-3000:]
    rows = pq.read_table(out).to_pylist()
    assert sorted(r["uri"] for r in rows) == uris, "every input exactly once"
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    run = json.loads((out / "_run.json").read_text())["run"]
    assert run["actors_max"] == 2
    loads = run["model_loads_per_node"]
    assert len(loads) == 2 and set(loads.values()) == {1}, (
        f"one model load on each of two nodes: {loads} {res.stderr[-6000:]}"
    )
    # both actors were up before the first row came back: every CPU busy from the start
    startup, actors = run["startup"], run["actor_startup"]
    assert sorted(len(a) for a in actors.values()) == [1, 1], actors
    ready = [a["ready_s"] for node in actors.values() for a in node]
    assert max(ready) == startup["all_actors_ready"] <= startup["first_row"], (startup, actors)
    for a in (a for node in actors.values() for a in node):
        assert a["startup_s"] == pytest.approx(a["process_s"] + a["import_s"] + a["model_load_s"], abs=0.05), a
    assert "If the arguments in the object store go out of scope" not in res.stderr  # Ray's line: explained instead
    assert res.stderr.count("m2fp-batch: Ray logs 'Actor ... has constructor arguments") <= 1
