"""The image that ``make image`` builds, driven with podman (this checkout's own storage root,
deploy/image.sh's settings): run a command to its end, or start a long-running container."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STATE = REPO / ".image"
MODEL_MOUNT = "/models/m2fp"  # where the deploy files mount the model (deploy/rayjob.yaml)
# deploy/image.sh run's flags: host network, the host's ulimits, room for Ray's object store
RUN_FLAGS = ("--network", "host", "--ulimit", "host", "--shm-size", "2g")


def podman_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment podman needs for this checkout's storage root (written by deploy/image.sh)."""
    return {
        **os.environ,
        "CONTAINERS_STORAGE_CONF": str(STATE / "storage.conf"),
        "CONTAINERS_CONF": str(REPO / "deploy" / "containers.conf"),
        **(extra or {}),
    }


def podman(*args: str, timeout: float = 120, check: bool = True, env: dict | None = None) -> str:
    res = subprocess.run(["podman", *args], env=podman_env(env), capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])} ... failed ({res.returncode}): {res.stderr[-3000:]}")
    return res.stdout


@dataclass(frozen=True)
class Image:
    name: str  # localhost/m2fp-batch:VERSION
    build_log: str

    def run(
        self,
        *args: str,
        mounts: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        entrypoint: str | None = None,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess:
        """``make image-run``'s command: the image's entrypoint (or ``entrypoint``) with ``args``, to its end.

        ``env``: variables passed by name (``-e NAME``, their values from podman's own
        environment, never on the command line)."""
        opts = _options(mounts, env, entrypoint)
        cmd = ["bash", str(REPO / "deploy" / "image.sh"), "run", *args]
        return subprocess.run(
            cmd, env=podman_env({"IMAGE_OPTS": " ".join(opts), **(env or {})}), capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip

    @contextlib.contextmanager
    def started(
        self,
        *args: str,
        mounts: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        entrypoint: str | None = None,
    ):
        """A detached container running ``args``; yields its name; stopped (SIGTERM, then killed) and removed."""
        name = f"m2fp-test-{uuid.uuid4().hex[:10]}"
        opts = _options(mounts, env, entrypoint)
        podman("run", "-d", "--name", name, *RUN_FLAGS, *opts, self.name, *args, env=env)
        try:
            yield name
        finally:
            podman("stop", "--time", "20", name, check=False, timeout=120)
            podman("rm", "--force", name, check=False)


def _options(mounts: tuple[str, ...], env: dict[str, str] | None, entrypoint: str | None) -> list[str]:
    opts = [f"-v={m}" for m in mounts] + [f"-e={k}" for k in env or {}]
    return opts + ([f"--entrypoint={entrypoint}"] if entrypoint else [])


def logs(name: str) -> str:
    res = subprocess.run(["podman", "logs", name], env=podman_env(), capture_output=True, text=True, timeout=60)
    return res.stdout + res.stderr


def wait_for(check, timeout: float, what: str, name: str) -> None:
    """Poll ``check()`` until it holds; fail with the container's log when it never does or the container ends."""
    end = time.time() + timeout
    while time.time() < end:
        with contextlib.suppress(OSError):
            if check():
                return
        state = podman("inspect", "--format", "{{.State.Running}}", name, check=False).strip()
        if state == "false":
            raise RuntimeError(f"{what}: the container ended:\n{logs(name)[-4000:]}")
        time.sleep(1)
    raise TimeoutError(f"{what} not ready after {timeout} s:\n{logs(name)[-4000:]}")


def shared_dir(path: Path, writable: bool = False) -> Path:
    """``path`` made readable (and writable) by the image's non-root user, as a mount source."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777 if writable else 0o755)
    return path


def copy_model(src: Path, dst: Path) -> Path:
    """A model dir the image's user can read (pytest's temporary dirs are private to root)."""
    shutil.copytree(src, dst)
    for p in [dst, *dst.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst
