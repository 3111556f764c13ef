"""The README's cluster commands work as written in a new shell (no venv on PATH, a fresh HOME).

The block between ``<!-- cluster-commands:begin/end -->`` runs in ``bash`` with only the paths
and ports replaced: /data/photos, /data/labels and /models/m2fp by test dirs, the head's ports by
free ones (other Rays may run on this machine). The head is stopped by killing the processes
of its own temp dir (``ray stop`` would stop every Ray of the user).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "pipeline"))
from cluster import free_ports, kill_processes_using  # noqa: E402

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]


def cluster_commands() -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- cluster-commands:begin -->\s*```bash\n(.*?)```\s*<!-- cluster-commands:end -->", text, re.S)
    assert m, "README.md has the cluster-commands block"
    return m.group(1)


def test_readme_cluster_commands_in_a_new_shell(tmp_path, tiny_model_dir):
    from PIL import Image
    from skimage import data

    photos, labels = tmp_path / "photos", tmp_path / "labels"
    photos.mkdir()
    Image.fromarray(data.astronaut()).resize((128, 128)).save(photos / "astronaut.jpg")
    Image.fromarray(data.coffee()).resize((96, 64)).save(photos / "coffee.png")
    gcs, dash, client, agent, metrics = free_ports(5)
    ray_tmp = tempfile.mkdtemp(prefix="rr", dir="/tmp")
    script = (
        cluster_commands()
        .replace("/data/photos", str(photos))
        .replace("/data/labels", str(labels))
        .replace("/models/m2fp", str(tiny_model_dir))
        .replace("127.0.0.1:8265", f"127.0.0.1:{dash}")
        .replace(
            "ray start --head",
            f"ray start --head --port={gcs} --dashboard-port={dash} --ray-client-server-port={client} "
            f"--dashboard-agent-listen-port={agent} --metrics-export-port={metrics} --temp-dir={ray_tmp} "
            "--node-ip-address=127.0.0.1",
        )
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {  # a new login shell: no venv on PATH, nothing of this test process's Ray settings
        "HOME": str(home),
        "PATH": os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if ".venv" not in p),
        "LANG": "C.UTF-8",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    try:
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=540
        )
    finally:
        kill_processes_using(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    log = proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.returncode == 0, log
    assert "succeeded" in log.lower(), log
    rows = pq.read_table(labels).to_pylist()
    assert sorted(Path(r["uri"]).name for r in rows) == ["astronaut.jpg", "coffee.png"]
    assert all(r["status"] == "ok" for r in rows)
