"""One real service for the serve tests: ``m2fp-batch serve`` with the tiny model on a free loopback port,
its own HOME (token auth from scratch) and Ray temp dir, stopped with SIGTERM; nothing of it may outlive it."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from PIL import Image

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "pipeline"))

from badfiles import MAX_PIXELS, MIN_SIDE  # noqa: E402
from cluster import free_ports  # noqa: E402

# Small model inputs keep the load tests quick; the job gets the same settings for the comparisons.
SHORT_EDGE, MAX_SIZE = 256, 512
MAX_BODY_MB = 1.0
QUEUE = 32


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log: Path

    def post(self, data: bytes, fields: dict[str, str] | None = None, name: str = "photo.jpg", timeout: float = 120):
        """POST multipart form-data to /api/parse; (status, headers, body bytes)."""
        body, ctype = multipart({"image": (name, data), **(fields or {})})
        return request(self.url + "api/parse", body, {"Content-Type": ctype}, timeout)

    def get(self, path: str, timeout: float = 30):
        return request(self.url + path.lstrip("/"), None, {}, timeout)


def multipart(fields: dict) -> tuple[bytes, str]:
    boundary = "m2fpboundary7d93"
    out = io.BytesIO()
    for key, value in fields.items():
        out.write(f"--{boundary}\r\n".encode())
        if isinstance(value, tuple):
            name, data = value
            out.write(f'Content-Disposition: form-data; name="{key}"; filename="{name}"\r\n'.encode())
            out.write(b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n")
        else:
            out.write(f'Content-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def request(url: str, data: bytes | None, headers: dict, timeout: float):
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def jpeg(array, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            continue
    return out


def _wait_ready(proc: subprocess.Popen, url: str, log: Path, timeout: float = 300) -> None:
    end = time.time() + timeout
    while time.time() < end:
        assert proc.poll() is None, f"m2fp-batch serve exited ({proc.returncode}):\n{log.read_text()[-4000:]}"
        if '{"ready": ' in log.read_text():
            try:
                if urllib.request.urlopen(url + "healthz", timeout=5).status == 200:
                    return
            except OSError:
                pass
        time.sleep(0.5)
    raise TimeoutError(f"no service on {url} after {timeout} s:\n{log.read_text()[-4000:]}")


@contextlib.contextmanager
def serving(
    model: Path, extra: tuple[str, ...] = (), env_extra: dict[str, str | None] | None = None, own_ray: bool = True
):
    """``m2fp-batch serve`` (1 thread, queue 32, 1 MiB body limit, the job's test guards) plus ``extra`` flags,
    on a free loopback port with its own HOME and Ray temp dir; stopped with SIGTERM, nothing left behind.
    ``env_extra``: variables set (a value) or removed (None) in its environment. ``own_ray``: it starts its
    own local Ray (False: it joins a cluster with --address, so Ray's processes are not its children)."""
    (port,) = free_ports(1)
    root = Path(tempfile.mkdtemp(prefix="srv", dir="/tmp"))
    home, raytmp = root / "home", root / "ray"
    home.mkdir()
    log = root / "serve.log"
    env = {
        **os.environ,
        "HOME": str(home),
        "RAY_TMPDIR": str(raytmp),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    for key, value in (env_extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    cmd = [
        sys.executable, "-m", "m2fp_batch.cli", "serve", "--model", str(model), "--port", str(port),
        "--threads", "1", "--queue", str(QUEUE), "--max-body-mb", str(MAX_BODY_MB),
        "--max-pixels", str(MAX_PIXELS), "--min-side", str(MIN_SIDE),
        "--short-edge", str(SHORT_EDGE), "--max-size", str(MAX_SIZE), *extra,
    ]  # fmt: skip
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_ready(proc, url, log)
        yield Server(url, proc, log)
    finally:
        ours = psutil.Process(proc.pid).children(recursive=True)  # Ray's GCS, raylet, workers, replicas
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        end = time.time() + 15  # the kill -9 watcher (m2fp_batch/localray.py) ends a moment after serve
        while _alive(ours) and time.time() < end:
            time.sleep(0.2)
        left = _alive(ours)
        names = [p.pid for p in left]
        for p in left:
            p.kill()
    assert rc == 0, log.read_text()[-4000:]
    assert (len(ours) > 3 or not own_ray) and not left, f"processes outlived `m2fp-batch serve`: {names}"


@pytest.fixture(scope="package")  # stopped once the serve tests are done
def server(tiny_model_dir) -> Server:
    """``m2fp-batch serve`` with the tiny model and the default (torch) engine."""
    with serving(tiny_model_dir) as srv:
        yield srv
