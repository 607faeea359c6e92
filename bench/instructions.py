#!/usr/bin/env python
"""Instructions per track call, under valgrind's callgrind: a new visitor's call and a
known visitor's, through config/wsgi.py in one process (no server, no threads).

CPU seconds on these shared machines drift by up to 2x within an hour; instruction
counts do not, so this is what to compare two checkouts with (``--app-dir``). It
counts the Python process only: PostgreSQL's and Redis's work is not in it.

    .venv/bin/python bench/instructions.py                 # this checkout
    .venv/bin/python bench/instructions.py --app-dir DIR   # another one
    .venv/bin/python bench/instructions.py --small         # CI: fewer calls

Needs valgrind (Debian's package). Uses bench/ingest.py's database and Redis db (BENCH_INGEST_DATABASE_URL /
BENCH_INGEST_REDIS_URL)
(dropped and flushed). About two minutes: callgrind runs Python ~50x slower.
"""

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import orjson
from benchcommon.databases import flush_redis, lock_database, recreate_database
from benchcommon.errors import BenchBroken, SetupFailed
from benchcommon.paths import PYTHON, ROOT
from benchcommon.server import basic
from ingestbench.config import Config, parse_args
from ingestbench.events import EventFactory
from ingestbench.setup import create_sources, manage, server_env

FULL = {"warm": 50, "new": 250, "known": 500}
SMALL = {"warm": 10, "new": 20, "known": 40}  # CI: that it runs, ~1.5 minutes
# Markers: callgrind zeroes its counts when the first is entered and writes them out
# when the second is: the loops between them are all that is counted.
START, STOP = "binascii_crc_hqx", "binascii_b2a_uu"


def prepare(cfg: Config, state: Path) -> None:
    recreate_database(cfg)
    flush_redis(cfg)
    manage(cfg, "migrate", "--no-input", "-v", "0")
    key = create_sources(cfg)["api_key"]
    # 400 visitors in turn: the first 400 calls each bring a new one, the rest are
    # visitors seen before.
    events = EventFactory(7, 400, run="cg").events(1000, 400, track_only=True)
    bodies = [orjson.dumps({**e, "sentAt": e["timestamp"]}) for e in events]
    state.write_bytes(
        orjson.dumps({"key": key, "bodies": [b.decode() for b in bodies]})
    )


def measure(cfg: Config, state: Path, sizes: dict[str, int]) -> None:
    """Runs under callgrind."""
    warm, new, known = sizes["warm"], sizes["new"], sizes["known"]
    import binascii

    saved = orjson.loads(state.read_bytes())
    key, bodies = saved["key"], [b.encode() for b in saved["bodies"]]
    os.environ.update(server_env(cfg))
    os.chdir(cfg.app_dir)
    sys.path.insert(0, str(cfg.app_dir))
    import django

    django.setup()
    from config.wsgi import application

    auth = basic(key)

    def call(body: bytes) -> None:
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/api/v1/track",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "HTTP_HOST": "127.0.0.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": "application/json",
            "HTTP_AUTHORIZATION": auth,
        }
        status: list[str] = []
        out = b"".join(application(environ, lambda s, h, e=None: status.append(s)))
        if not status[0].startswith("200") or orjson.loads(out)["accepted"] != 1:
            raise BenchBroken(f"{status[0]}: {out[:200]!r}")

    for body in bodies[:warm]:
        call(body)
    binascii.crc_hqx(b"x", 0)
    for body in bodies[warm : warm + new]:
        call(body)
    binascii.b2a_uu(b"x")
    for body in bodies[warm + new : 400]:  # every visitor seen once
        call(body)
    binascii.crc_hqx(b"x", 0)
    for body in bodies[400 : 400 + known]:
        call(body)
    binascii.b2a_uu(b"x")


def _count(cfg: Config, a: argparse.Namespace) -> list[int] | None:
    """Prepare, then run the measuring loops under callgrind: the two counts, or
    None if that run failed."""
    with tempfile.TemporaryDirectory() as tmp:
        state, out = Path(tmp) / "state", Path(tmp) / "callgrind.out"
        prepare(cfg, state)
        run = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                f"--zero-before={START}",
                f"--dump-before={STOP}",
                PYTHON,
                __file__,
                "--app-dir",
                str(a.app_dir),
                *(["--small"] if a.small else []),
                "--measure",
                str(state),
            ],
            env={**os.environ, "PYTHONHASHSEED": "0"},
            capture_output=True,
            text=True,
        )
        if run.returncode:
            print(run.stderr[-3000:], file=sys.stderr)
            return None
        counts = []
        for part in (1, 2):
            for line in Path(f"{out}.{part}").read_text().splitlines():
                if line.startswith("summary:"):
                    counts.append(int(line.split()[1]))
    return counts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--app-dir", type=Path, default=ROOT)
    p.add_argument("--small", action="store_true", help="the CI run: fewer calls")
    p.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    cfg = parse_args(["--app-dir", str(a.app_dir)])
    sizes = SMALL if a.small else FULL
    if a.measure:
        measure(cfg, a.measure, sizes)
        return 0
    if not shutil.which("valgrind"):
        print("needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    try:
        # bench/ingest.py's database: one run at a time, or one drops the other's.
        lock = lock_database(cfg)
    except SetupFailed as exc:
        print(f"SET-UP FAILED: {exc}", file=sys.stderr)
        return 2
    try:
        counts = _count(cfg, a)
    finally:
        lock.close()
    if counts is None:
        return 1
    print(f"app: {a.app_dir}")
    new, known = sizes["new"], sizes["known"]
    print(f"track call, new visitor:   {counts[0] / new / 1e6:.2f}M instructions")
    print(f"track call, known visitor: {counts[1] / known / 1e6:.2f}M instructions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
