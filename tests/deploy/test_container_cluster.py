"""A Ray cluster of two containers from the image: ``ray start --head`` in one, ``ray start --address``
in the other (host network, every listener on its own free loopback port, token auth). ``ray job
submit`` runs jobs/parse_images.py from the image (deploy/rayjob.yaml's entrypoint); the model actors
run on both containers and every input becomes exactly one row."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from container import MODEL_MOUNT, podman, podman_env, shared_dir, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))
from cluster import free_ports  # noqa: E402

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(1800)]

# deploy/rayjob.yaml's entrypoint, with the test's input, output and shard settings
JOB = ("python", "jobs/parse_images.py", "--input", "/data/in", "--out", "/data/out/labels", "--model", MODEL_MOUNT)
SETTLE_S = 12  # seconds the worker node must stay alive after it joined
JOB_FLAGS = ("--shard-size", "1", "--batch-size", "1", "--set", "cpus_per_actor=1", "--set", "progress_interval_s=2")


def _ray_env(token: str) -> dict[str, str]:
    """Passed by name into both containers (the token never on a command line)."""
    return {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",  # several nodes on loopback
        "RAY_USAGE_STATS_ENABLED": "0",
    }


def _head_args(gcs: int, dash: int, ports: list[int]) -> list[str]:
    client, agent, metrics = ports
    return [
        "start", "--head", "--block", "--num-cpus=1", f"--port={gcs}", "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", f"--ray-client-server-port={client}",
        f"--dashboard-agent-listen-port={agent}", f"--metrics-export-port={metrics}", "--disable-usage-stats",
        '--resources={"head_container": 1}',
    ]  # fmt: skip


def _worker_args(gcs: int, ports: list[int]) -> list[str]:
    nm, om, metrics, agent, agent_grpc, rt_env = ports
    return [
        "start", f"--address=127.0.0.1:{gcs}", "--block", "--num-cpus=1", "--node-ip-address=127.0.0.1",
        f"--node-manager-port={nm}", f"--object-manager-port={om}", f"--metrics-export-port={metrics}",
        f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--runtime-env-agent-port={rt_env}", "--disable-usage-stats", '--resources={"worker_container": 1}',
    ]  # fmt: skip


def _nodes(head: str, env: dict[str, str]) -> dict[str, str]:
    """Alive node id -> the container it runs in (its custom resource), asked from inside the head."""
    code = (
        "import json, ray; ray.init(address='auto', logging_level='ERROR'); "
        "print(json.dumps({n['NodeID']: [r for r in n['Resources'] if r.endswith('_container')] for n in ray.nodes() if n['Alive']}))"
    )
    out = podman("exec", *[f"--env={k}" for k in env], head, "python", "-c", code, env=env, timeout=180)
    return {node: rs[0] for node, rs in json.loads(out.strip().splitlines()[-1]).items() if rs}


def test_two_containers_one_cluster_actors_on_both_every_input_once(image, mounted_model, photos, tmp_path):
    token = secrets.token_hex(32)
    env = _ray_env(token)
    out = shared_dir(tmp_path / "out", writable=True)
    mounts = (f"{mounted_model}:{MODEL_MOUNT}:ro", f"{photos}:/data/in:ro", f"{out}:/data/out")
    gcs, dash, *ports = free_ports(12)
    with image.started(*_head_args(gcs, dash, ports[:3]), mounts=mounts, env=env, entrypoint="ray") as head:
        url = f"http://127.0.0.1:{dash}"
        wait_for(lambda: _answers(url + "/api/version"), 180, "ray head", head)
        with image.started(*_worker_args(gcs, ports[3:9]), mounts=mounts, env=env, entrypoint="ray") as worker:
            wait_for(lambda: len(_nodes(head, env)) == 2, 180, "the worker container joins", worker)
            time.sleep(SETTLE_S)  # a raylet whose agent fails exits within seconds of joining
            nodes = _nodes(head, env)
            assert len(nodes) == 2, f"the worker container's node died after joining: {podman('logs', worker)[-3000:]}"
            submit = ["ray", "job", "submit", "--address", url, "--", *JOB, *JOB_FLAGS]
            res = subprocess.run(
                ["podman", "exec", *[f"--env={k}" for k in env], head, *submit],
                env=podman_env(env), capture_output=True, text=True, timeout=900,
            )  # fmt: skip
    logs = res.stdout[-6000:] + res.stderr[-3000:]
    assert res.returncode == 0 and "succeeded" in res.stdout, logs
    assert sorted(nodes.values()) == ["head_container", "worker_container"], nodes
    rows = pq.read_table(out / "labels").to_pylist()
    assert sorted(r["uri"] for r in rows) == sorted(f"/data/in/{p.name}" for p in photos.iterdir()), "every input once"
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    run = json.loads((out / "labels" / "_run.json").read_text())["run"]
    loads = run["model_loads_per_node"]
    where = {nodes[node]: n for node, n in loads.items()}
    print("actors per container:", {nodes[n]: len(a) for n, a in run["actor_startup"].items()}, "node ids:", nodes)
    assert where == {"head_container": 1, "worker_container": 1}, (loads, nodes, logs)


def _answers(url: str) -> bool:
    """The dashboard answers (401 without the token counts as up)."""
    try:
        urllib.request.urlopen(url, timeout=2)
    except urllib.error.HTTPError as e:
        return e.code in (401, 403)
    return True
