"""A real Label Studio server for the tests: its own venv (``make review-tools``), SQLite, loopback, a user token.

:class:`LabelStudioServer` starts ``label-studio start`` on a free 127.0.0.1 port with a fresh HOME
and data dir under a tmp dir, local-files serving rooted at ``document_root``, and a legacy user
token; :meth:`stop` ends its whole process group and checks that nothing of it runs any more.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
LS_BIN = REPO / ".venv-ls" / "bin" / "label-studio"
START_TIMEOUT_S = 420  # first start on SQLite takes ~55 s on an idle 2-core VM; CI shares the cores
USER = "reviewer@example.com"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabelStudioServer:
    """One ``label-studio start`` process group (see the module doc)."""

    def __init__(self, root: Path, document_root: Path, extra_env: dict[str, str] | None = None) -> None:
        if not LS_BIN.exists():
            raise RuntimeError(f"{LS_BIN} is missing: run `make review-tools` (make test does)")
        self.root, self.document_root = root, document_root
        self.home, self.data = root / "home", root / "data"
        self.home.mkdir(parents=True)
        self.data.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_hex(20)
        self.proc: subprocess.Popen | None = None
        self.extra_env = dict(extra_env or {})

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO", "DJANGO"))}
        env.update(
            HOME=str(self.home),
            LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
            LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(self.document_root),
            LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true",
            SENTRY_DSN="",
            FRONTEND_SENTRY_DSN="",
            COLLECT_ANALYTICS="false",
        )
        env.update(self.extra_env)
        env.pop("VIRTUAL_ENV", None)
        env.pop("PYTHONPATH", None)
        return env

    def start(self) -> LabelStudioServer:
        cmd = [
            str(LS_BIN), "start", "--no-browser", "--port", str(self.port), "--internal-host", "127.0.0.1",
            "--data-dir", str(self.data), "--username", USER, "--password", secrets.token_hex(12),
            "--user-token", self.token, "--enable-legacy-api-token",
        ]  # fmt: skip
        log = open(self.root / "label-studio.log", "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            cmd, env=self.env(), cwd=self.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"label-studio exited with {self.proc.returncode}: {self.log_tail()}")
            if self.healthy():
                return self
            time.sleep(1.0)
        self.stop()
        raise RuntimeError(f"label-studio did not answer /health within {START_TIMEOUT_S} s: {self.log_tail()}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=5) as r:  # noqa: S310 - loopback
                return b"UP" in r.read(200)
        except OSError:
            return False

    def log_tail(self) -> str:
        path = self.root / "label-studio.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def processes(self) -> list[psutil.Process]:
        """Every live process of the server's process group."""
        if self.proc is None:
            return []
        out = []
        for p in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(p.pid) == self.proc.pid:
                    out.append(p)
            except (ProcessLookupError, psutil.Error, OSError):
                continue
        return out

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL what is left after 20 s; then nothing of it runs."""
        if self.proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and [p for p in self.processes() if p.status() != "zombie"]:
                time.sleep(0.2)
            try:
                self.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        left = [p for p in self.processes() if p.status() != "zombie"]
        assert not left, f"label-studio processes left running: {[p.pid for p in left]}"
