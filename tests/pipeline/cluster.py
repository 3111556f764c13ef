"""Servers for the cluster tests: a Ray head (`ray start --head --block`) and SeaweedFS
(`weed mini`), each on free loopback ports in its own process group, stopped by that group."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent


# Ports for servers started later: above Ray's worker ports (10002-19999) and below the kernel's
# ephemeral range, where any outgoing connection (Ray's own, by the hundred) may take a port that
# was free a moment before: a port picked there and bound seconds later can be gone (a Ray agent
# of the worker container once failed on one).
PORT_RANGE = (20000, 32768)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return PORT_RANGE[1]


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports that are free now, outside Ray's worker ports and the ephemeral range."""
    import random

    low = PORT_RANGE[0]
    high = max(low + 1000, min(PORT_RANGE[1], _ephemeral_low()))
    rng, ports = random.Random(), []
    while len(ports) < n:
        port = rng.randrange(low, high)
        if port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("", port))
            except OSError:
                continue
        ports.append(port)
    return ports


def _wait(check, timeout: float, what: str, proc: subprocess.Popen, log: Path) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}): {log.read_text()[-3000:]}")
        with contextlib.suppress(OSError, http.client.HTTPException):  # not up yet, or another server's port
            if check():
                return
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {timeout} s: {log.read_text()[-3000:]}")


def token_path() -> Path:
    """The session's Ray token, never one left in the user's ``~``: the one tests/conftest.py makes,
    or (a benchmark using these servers) a fresh one in a temporary dir, made on first use."""
    env = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if env:
        path = Path(env)
        assert path.is_file(), f"RAY_AUTH_TOKEN_PATH={env} is not a file"
        return path
    path = Path(tempfile.mkdtemp(prefix="raytoken", dir="/tmp")) / "auth_token"
    path.write_text(secrets.token_hex(32))
    path.chmod(0o600)
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(path)
    return path


def auth_headers() -> dict[str, str]:
    """The token header for the head's dashboard (token auth; the token file ray start uses).

    Passed explicitly: a process that already ran a Ray with another auth mode keeps that mode."""
    return {"Authorization": "Bearer " + token_path().read_text().strip()}


def descendants_matching(pid: int, needle: str) -> list[int]:
    """Pids of descendants of ``pid`` whose command line contains ``needle``."""
    import psutil

    out = []
    for p in psutil.Process(pid).children(recursive=True):
        try:
            if needle in " ".join(p.cmdline()):
                out.append(p.pid)
        except psutil.NoSuchProcess:
            continue
    return out


def processes_using(path: str | os.PathLike) -> list[int]:
    """Processes started for a Ray temp dir ``path``: it is in their command line or environment,
    or they hold a file open under it. Ray's agents retitle themselves, which overwrites both
    command line and environment in /proc, but they keep their logs in the session dir open."""
    root = str(path)
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError):
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read()
            named = any(root.encode() + end in text + b"\0" for text in (cmd, env) for end in (b"\0", b"/"))
            if named or _has_open_file_under(int(name), root):
                found.append(int(name))
    return found


def _has_open_file_under(pid: int, root: str) -> bool:
    prefix = root.rstrip("/") + "/"
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(prefix):
                return True
    return False


def kill_processes_using(path: str | os.PathLike, seconds: float = 15.0) -> None:
    """SIGTERM, then SIGKILL, every process of :func:`processes_using`, until none is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes_using(path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        end = time.time() + seconds
        while processes_using(path) and time.time() < end:
            time.sleep(0.5)


def _answers(url: str) -> bool:
    """The HTTP server answers (401/403 without a token or keys count as up)."""
    try:
        urllib.request.urlopen(url, timeout=2)
    except urllib.error.HTTPError as e:
        return e.code in (401, 403)
    return True


def _stop(proc: subprocess.Popen, grace: float = 20.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@contextlib.contextmanager
def ray_head(num_cpus: int = 2, multi_node: bool = False):
    """Yield (gcs address, dashboard url, env, head pid) of a fresh Ray cluster: single-node,
    or, with ``multi_node``, one that :func:`ray_worker` nodes may join (still on loopback)."""
    gcs, dash, client, agent, metrics = free_ports(5)
    tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    log = tmp / "head.log"
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1" if multi_node else "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token_path()),
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }
    # token auth: `ray start` refuses to run without a token; make one where clients look
    subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    cmd = [
        str(BIN / "ray"), "start", "--head", "--block", f"--num-cpus={num_cpus}", f"--port={gcs}",
        "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
        f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}",
        f"--metrics-export-port={metrics}", f"--temp-dir={tmp}", "--disable-usage-stats",
    ]  # fmt: skip
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{dash}"
    try:
        _wait(lambda: _answers(url + "/api/version"), 120, "ray head", proc, log)
        yield f"127.0.0.1:{gcs}", url, env, proc.pid
    finally:
        _stop(proc)
        kill_processes_using(tmp)  # the agents, retitled, outlive `ray start`


@contextlib.contextmanager
def ray_worker(gcs: str, env: dict[str, str], num_cpus: int = 1):
    """A second Ray node (``ray start --address``) on this machine, joined to the head at ``gcs``.

    Yields its ``ray start`` pid. Every listener on its own free loopback port (the head's
    defaults would clash); files go to the head's temp dir."""
    nm, om, metrics, agent, agent_grpc, rt_env = free_ports(6)
    tmp = Path(tempfile.mkdtemp(prefix="rw", dir="/tmp"))
    log = tmp / "worker.log"
    cmd = [
        str(BIN / "ray"), "start", f"--address={gcs}", "--block", f"--num-cpus={num_cpus}",
        "--node-ip-address=127.0.0.1", f"--node-manager-port={nm}", f"--object-manager-port={om}",
        f"--metrics-export-port={metrics}", f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={rt_env}", "--disable-usage-stats",
    ]  # fmt: skip
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        _wait(lambda: "Ray runtime started" in log.read_text(), 120, "ray worker node", proc, log)
        yield proc.pid
    finally:
        _stop(proc)


@contextlib.contextmanager
def seaweedfs(access_key: str = "m2fp-test", secret_key: str = "m2fp-test-secret"):
    """Yield the S3 endpoint url of a SeaweedFS server with one identity (keys enforced)."""
    tmp = Path(tempfile.mkdtemp(prefix="weed", dir="/tmp"))
    ports = free_ports(12)
    conf = {
        "identities": [
            {
                "name": "tester",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (tmp / "s3.json").write_text(json.dumps(conf))
    (tmp / "data").mkdir()
    log = tmp / "weed.log"
    cmd = [
        str(BIN / "weed"), "mini", f"-dir={tmp / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-s3.config={tmp / 's3.json'}", "-admin.ui=false", "-master.telemetry=false",
        f"-s3.port={ports[0]}", f"-master.port={ports[1]}", f"-volume.port={ports[2]}", f"-filer.port={ports[3]}",
        f"-webdav.port={ports[4]}", f"-admin.port={ports[5]}", f"-master.port.grpc={ports[6]}",
        f"-volume.port.grpc={ports[7]}", f"-filer.port.grpc={ports[8]}", f"-s3.port.grpc={ports[9]}",
        f"-admin.port.grpc={ports[10]}", f"-debug.port={ports[11]}",
    ]  # fmt: skip
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=tmp, start_new_session=True)
    endpoint = f"http://127.0.0.1:{ports[0]}"

    try:
        _wait(lambda: _answers(endpoint), 60, "seaweedfs", proc, log)
        yield endpoint
    finally:
        _stop(proc)
