"""Child processes in their own process group, and granian serving the app."""

from __future__ import annotations

import base64
import http.client
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson

from benchcommon.cpu import descendants
from benchcommon.errors import SetupFailed
from benchcommon.paths import PYTHON


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


class Proc:
    """A child process in its own process group (stopped as one), logging to a file."""

    def __init__(
        self,
        name: str,
        command: list[str],
        env: dict[str, str],
        log_path: Path,
        cwd: Path,
    ) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self._log: Any = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as one
        )

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pids(self) -> list[int]:
        """The process and all its descendants."""
        return descendants(self.proc.pid) if self.alive() else []

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=5)
        except ProcessLookupError:
            pass
        finally:
            if self._log:
                self._log.close()
                self._log = None

    def tail(self, n: int = 30) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


def granian_command(
    port: int, workers: int, blocking_threads: int, backpressure: int
) -> list[str]:
    """granian serving config.wsgi (the tracking calls' door in front of Django)."""
    return [
        PYTHON, "-m", "granian",
        "--interface", "wsgi",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", str(workers),
        "--blocking-threads", str(blocking_threads),
        "--backpressure", str(backpressure),
        "--http", "1",
        "--no-ws",
        "--log-level", "warning",
        "config.wsgi:application",
    ]  # fmt: skip


def wait_ready(
    server: Proc, port: int, workers: int, key: str, timeout: float = 60.0
) -> None:
    """Until every granian worker has loaded Django: a bad key must get its 401."""
    deadline = time.monotonic() + timeout
    body = orjson.dumps({"event": "x", "anonymousId": "a"})
    headers = {"Content-Type": "application/json", "Authorization": basic(key)}
    ok = 0
    while time.monotonic() < deadline:
        if not server.alive():
            code = server.proc.returncode if server.proc else None
            raise SetupFailed(f"server exited with {code}:\n{server.tail(40)}")
        try:
            # A new connection each time so that every worker gets some.
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/api/v1/track", body, headers)
            status = conn.getresponse().status
            conn.close()
            if status != 401:
                raise SetupFailed(f"readiness probe got HTTP {status}, wanted 401")
            ok += 1
            if ok >= 4 * workers:
                return
        except (OSError, http.client.HTTPException):
            time.sleep(0.1)
    raise SetupFailed(
        f"server did not answer within {timeout:.0f} s:\n{server.tail(40)}"
    )
