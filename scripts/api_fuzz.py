#!/usr/bin/env python3
"""A bounded schemathesis run against a live Nudge: every operation of
/api/v1/openapi.json, fuzzed with a valid server write key. Exits non-zero if any
answer is a 5xx (or breaks the schema the API publishes).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/nudge REDIS_URL=redis://... \\
        .venv/bin/python scripts/api_fuzz.py [--max-examples N] [--max-time S]

It works in a database of its own (DATABASE_URL's name + "_fuzz", dropped and made
again, dropped at the end), with the demo data and a server source whose rate limit
the fuzzer cannot reach, and serves the API as `scripts/nudge.py run` does (granian
over config.wsgi, so through the tracking calls' WSGI door).
"""

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

# What the run checks: no 5xx, and answers that the published schema describes
# (status codes, bodies, content types).
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)

# A server source (allowed privacy requests) and a browser source the fuzzer cannot
# push into 429 (the rate limit has tests of its own), a static segment and the
# demo's active workflow for the ids it tries. Prints the two keys.
SETUP = """
from apps.events.models import Source
from apps.events.services import source_create
from apps.segments.models import Segment
for kind in (Source.Kind.SERVER, Source.Kind.BROWSER):
    source, key = source_create(name=f"Fuzz {kind}", kind=kind)
    source.rate_limit_per_second = 1_000_000
    source.privacy_requests = kind == Source.Kind.SERVER
    source.save(update_fields=["rate_limit_per_second", "privacy_requests"])
    print(key)
Segment.objects.get_or_create(name="Fuzz list", defaults={"kind": Segment.Kind.STATIC})
"""

# Most of the time goes to the server key, which reaches every operation; the rest
# to the browser key, whose calls take other paths (what it may not change, 403s).
SERVER_KEY_SHARE = 2 / 3


def log(message: str) -> None:
    print(f"[api-fuzz] {message}", flush=True)


def fuzz_database_url(url: str) -> str:
    parts = urlsplit(url)
    name = parts.path.lstrip("/") + "_fuzz"
    return urlunsplit(parts._replace(path="/" + name))


def recreate_database(url: str, *, drop_only: bool = False) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [PYTHON, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


def wait_until_up(url: str, server: subprocess.Popen, log_file: Path) -> None:
    for _ in range(240):
        if server.poll() is not None:
            sys.stdout.write(log_file.read_text())
            sys.exit("the server exited before answering")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=2),  # noqa: S310 - our own URL
        ):
            return
        time.sleep(0.25)
    sys.exit(f"the server did not answer {url}")


def schemathesis(
    origin: str,
    key: str,
    seconds: int,
    args: argparse.Namespace,
    *,
    cwd: Path,
    env: dict[str, str],
) -> int:
    """One `st run` over every operation with this key; its exit status."""
    command = [
        str(Path(PYTHON).parent / "st"),
        "run",
        f"{origin}/api/v1/openapi.json",
        "--url",
        origin,
        "--auth",
        f"{key}:",
        "--checks",
        CHECKS,
        "--max-examples",
        str(args.max_examples),
        "--max-time",
        str(seconds),
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
        "--no-color",
    ]
    if args.seed is not None:
        command += ["--seed", str(args.seed)]
    return subprocess.run(command, cwd=cwd, env=env).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=40)
    parser.add_argument("--max-time", type=int, default=180, help="seconds")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()

    base_url = os.environ.get(
        "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/nudge"
    )
    database_url = fuzz_database_url(base_url)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "NUDGE_WEBHOOK_SECRET": secrets.token_urlsafe(32),
        "PYTHONPATH": str(ROOT),
    }
    log(f"database {urlsplit(database_url).path.lstrip('/')}")
    recreate_database(database_url)
    work = Path(tempfile.mkdtemp(prefix="nudge-api-fuzz-"))
    server = None
    try:
        manage(env, "migrate", "--noinput")
        manage(env, "nudge_demo")
        server_key, browser_key = manage(env, "shell", "-c", SETUP).split()[-2:]
        port = free_port()
        server_log = work / "server.log"
        with open(server_log, "w") as out:
            server = subprocess.Popen(
                [
                    PYTHON,
                    "-m",
                    "granian",
                    "--interface",
                    "wsgi",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--workers",
                    "1",
                    "config.wsgi:application",
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        origin = f"http://127.0.0.1:{port}"
        wait_until_up(f"{origin}/api/v1/openapi.json", server, server_log)
        log(f"server up on {origin}; fuzzing for at most {args.max_time} s")
        server_time = round(args.max_time * SERVER_KEY_SHARE)
        status = 0
        for name, key, seconds in [
            ("server", server_key, server_time),
            ("browser", browser_key, args.max_time - server_time),
        ]:
            log(f"with the {name} key, for at most {seconds} s")
            run = schemathesis(origin, key, seconds, args, cwd=work, env=env)
            status = status or run
        # What schemathesis saw, and what the server logged: a 500 it answered to
        # a request schemathesis did not check would show here.
        server_errors = server_log.read_text().count("Internal Server Error")
        if server_errors:
            log(f"the server logged {server_errors} server errors")
            status = status or 1
        if status != 0:
            log(f"failed ({status}); the server's log:")
            sys.stdout.write(server_log.read_text()[-20_000:])
        return status
    finally:
        if server is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
        recreate_database(database_url, drop_only=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
