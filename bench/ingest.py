#!/usr/bin/env python
"""Ingestion benchmark: the HTTP API against a real granian server, and raw COPY.

What it does, in order (see bench/README.md for how to run it):

1. Drops and recreates its own PostgreSQL database (``nudge_bench``) and flushes its
   own Redis db (``/13``), runs ``manage.py migrate`` and creates two server sources:
   one for the API, one for the COPY baseline.
2. Starts granian (WSGI, 2 workers by default) on a free port and waits for it.
3. Measures, with all request bodies built before the clock starts:
   - batch: N requests of 100 events to /api/v1/batch, closed loop, c in flight;
   - COPY baseline: the same kind of rows COPYed straight into events_event;
   - single-call floor: /api/v1/track with an unknown key (a 401; no DB, no Redis);
   - single track calls at saturation (closed loop, c in flight);
   - single track calls open loop at a fixed offered rate, latency measured from
     each request's intended send time (no coordinated omission).
4. Checks correctness: every accepted messageId is in the table exactly once, no
   request failed, a re-sent batch is all duplicates, one RQ job per request.
5. Prints a table against the targets in DESIGN.md and writes bench/out/ingest.json.

Exit status: 0 whenever the run completed (a MISS is a measurement, not a failure),
1 if something broke (rows lost or duplicated, unexpected responses), 2 if set-up
failed (the server did not start, migrate failed), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import http.client
import math
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg
import redis
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "bench" / "out"
PYTHON = sys.executable

TARGETS = {
    "batch_events_per_s": 20_000,
    "batch_pct_of_copy": 30.0,
    "single_rps": 1_500,
    "open_p99_ms": 50.0,
    "open_rate": 500,
}

CLK_TCK = os.sysconf("SC_CLK_TCK")
# CPU used by processes outside the benchmark above which a phase is flagged as noisy.
NOISY_CORES = 0.2
SENTINEL = "nudge-bench:sentinel"
# Set on Ctrl-C: the client threads stop sending.
STOP = threading.Event()


class BenchBroken(Exception):
    """Something went wrong that makes the figures meaningless (exit 1)."""


class SetupFailed(Exception):
    """The environment could not be prepared (exit 2)."""


# -- configuration ---------------------------------------------------------------------


@dataclass
class Config:
    small: bool
    database_url: str
    redis_url: str
    app_dir: Path
    workers: int
    blocking_threads: int
    backpressure: int
    port: int
    batches: int
    batch_size: int
    batch_concurrency: int
    users_per_batch: int
    users: int | None
    single_requests: int
    single_concurrency: int
    max_seconds: float
    open_rate: float
    open_seconds: float
    open_threads: int
    copy_rows: int
    seed: int
    json_out: Path
    force: bool
    profile: str | None
    profile_requests: int


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(
        description="Benchmark the ingestion API (batch and single calls) against "
        "raw COPY, on a real granian server. Defaults are the full run; --small is "
        "the CI run.",
    )
    add = p.add_argument
    add("--small", action="store_true", help="the CI mode: well under 60 s")
    add(
        "--database-url",
        default=os.environ.get(
            "BENCH_INGEST_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/nudge_bench",
        ),
        help="the benchmark's own database: DROPPED and recreated at the start",
    )
    add(
        "--redis-url",
        default=os.environ.get("BENCH_INGEST_REDIS_URL", "redis://127.0.0.1:6379/13"),
        help="the benchmark's own Redis db: FLUSHED at the start",
    )
    add(
        "--app-dir",
        type=Path,
        default=ROOT,
        help="the Nudge checkout to serve (default: the one holding this script)",
    )
    add("--workers", type=int, default=2, help="granian worker processes (2)")
    add(
        "--blocking-threads",
        type=int,
        default=12,
        help="granian threads running the WSGI app, per worker (12)",
    )
    add(
        "--backpressure",
        type=int,
        help="granian's cap on open connections per worker (1024 / workers); "
        "keep it above the client's connections",
    )
    add("--port", type=int, default=0, help="server port (default: a free one)")
    add("--batches", type=int, help="batch requests (full 1500, small 20)")
    add("--batch-size", type=int, default=100, help="events per batch (100)")
    add("--batch-concurrency", type=int, help="batches in flight (full 16, small 4)")
    add("--users-per-batch", type=int, default=10, help="distinct visitors (10)")
    add(
        "--users",
        type=int,
        help="visitors the batches draw from (batches x users-per-batch / 4, so each "
        "comes back in about 4 batches); more visitors, fewer identity races",
    )
    add("--single-requests", type=int, help="track calls (full 20000, small 300)")
    add(
        "--single-concurrency",
        type=int,
        help="track calls in flight (full 32, small 8)",
    )
    add(
        "--max-seconds",
        type=float,
        help="stop a closed-loop phase after this long (full 30, small 15)",
    )
    add("--open-rate", type=float, help="open-loop req/s (full 500, small 100)")
    add("--open-seconds", type=float, help="open-loop seconds (full 20, small 5)")
    add("--open-threads", type=int, default=64, help="open-loop sender threads (64)")
    add("--copy-rows", type=int, help="COPY rows (full: as many as batch, small 20000)")
    add("--seed", type=int, default=42)
    add("--json-out", type=Path, default=OUT_DIR / "ingest.json")
    add(
        "--force",
        action="store_true",
        help="allow a database name without 'bench' in it, or Redis db 0",
    )
    add(
        "--profile",
        choices=["batch", "track"],
        help="instead of the benchmark: send that phase's requests through Django "
        "in this process (no server) and print CPU and PostgreSQL / Redis round "
        "trips per request, then a cProfile of the same",
    )
    add(
        "--profile-requests",
        type=int,
        help="requests for --profile (batch 300, track 3000), half of them profiled",
    )
    a = p.parse_args(argv)
    small = a.small
    batches = a.batches or (20 if small else 1500)
    return Config(
        small=small,
        database_url=a.database_url,
        redis_url=a.redis_url,
        app_dir=a.app_dir.resolve(),
        workers=a.workers,
        blocking_threads=a.blocking_threads,
        backpressure=a.backpressure or max(1, 1024 // a.workers),
        port=a.port,
        batches=batches,
        batch_size=a.batch_size,
        batch_concurrency=a.batch_concurrency or (4 if small else 16),
        users_per_batch=a.users_per_batch,
        users=a.users,
        single_requests=a.single_requests or (300 if small else 20_000),
        single_concurrency=a.single_concurrency or (8 if small else 32),
        max_seconds=a.max_seconds or (15.0 if small else 30.0),
        open_rate=a.open_rate or (100.0 if small else float(TARGETS["open_rate"])),
        open_seconds=a.open_seconds or (5.0 if small else 20.0),
        open_threads=a.open_threads,
        copy_rows=a.copy_rows or (20_000 if small else batches * a.batch_size),
        seed=a.seed,
        json_out=a.json_out,
        force=a.force,
        profile=a.profile,
        profile_requests=a.profile_requests or (300 if a.profile == "batch" else 3000),
    )


# -- set-up: database, redis, migrate, sources -----------------------------------------


def _db_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def lock_database(cfg: Config) -> psycopg.Connection:
    """One run at a time per database: two would drop each other's tables.

    A session advisory lock, held by the returned connection until it is closed.
    """
    name = _db_name(cfg.database_url)
    try:
        conn = psycopg.connect(_with_db(cfg.database_url, "postgres"), autocommit=True)
    except psycopg.Error as exc:
        raise SetupFailed(f"cannot reach PostgreSQL: {exc}") from exc
    got = conn.execute(
        "SELECT pg_try_advisory_lock(hashtext(%s))", (f"nudge-bench-ingest:{name}",)
    ).fetchone()[0]
    if not got:
        conn.close()
        raise SetupFailed(
            f"another bench/ingest.py run is using database {name!r}: wait for it, "
            "or give this one its own --database-url and --redis-url"
        )
    return conn


def recreate_database(cfg: Config) -> None:
    name = _db_name(cfg.database_url)
    if not name:
        raise SetupFailed("--database-url has no database name")
    if "bench" not in name and not cfg.force:
        raise SetupFailed(
            f"refusing to drop database {name!r}: its name has no 'bench' (use --force)"
        )
    try:
        with psycopg.connect(
            _with_db(cfg.database_url, "postgres"), autocommit=True
        ) as c:
            ident = sql.Identifier(name)
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
            c.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    except psycopg.Error as exc:
        raise SetupFailed(f"could not recreate database {name!r}: {exc}") from exc


def flush_redis(cfg: Config) -> redis.Redis:
    client = redis.Redis.from_url(cfg.redis_url)
    db = client.connection_pool.connection_kwargs.get("db", 0)
    if int(db) == 0 and not cfg.force:
        raise SetupFailed("refusing to flush Redis db 0 (give another db or --force)")
    try:
        client.flushdb()
    except redis.RedisError as exc:
        raise SetupFailed(f"could not flush Redis at {cfg.redis_url}: {exc}") from exc
    return client


def server_env(cfg: Config) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=cfg.database_url,
        REDIS_URL=cfg.redis_url,
        DEBUG="0",
        LOG_LEVEL=os.environ.get("BENCH_SERVER_LOG_LEVEL", "WARNING"),
        # The limiter still runs (a Redis round trip per request); it just never says
        # 429 at the rates a benchmark reaches.
        NUDGE_RATE_LIMIT_PER_SECOND="1000000000",
        # Database connections live through the run. With the default 60 s they were
        # replaced in the middle of the track phase, and a backend that exits takes
        # its CPU out of the per-process figures: PostgreSQL looked cheap, and the
        # machine looked busy with "other" work.
        DB_CONN_MAX_AGE="3600",
        PYTHONUNBUFFERED="1",
    )
    return env


def manage(cfg: Config, *args: str) -> str:
    proc = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=cfg.app_dir,
        env=server_env(cfg),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SetupFailed(
            f"manage.py {' '.join(args[:1])} failed ({proc.returncode}):\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    return proc.stdout


CREATE_SOURCES = """
import json
from apps.events.models import Source
from apps.events.services import source_create
api, api_key = source_create(name="bench-api", kind=Source.Kind.SERVER)
copy, _ = source_create(name="bench-copy", kind=Source.Kind.SERVER)
print(json.dumps({"api_id": api.pk, "api_key": api_key, "copy_id": copy.pk}))
"""


def create_sources(cfg: Config) -> dict[str, Any]:
    out = manage(cfg, "shell", "-c", CREATE_SOURCES)
    return orjson.loads(out.strip().splitlines()[-1])


# -- the server ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """granian serving config.wsgi, in its own process group."""

    def __init__(self, cfg: Config, log_path: Path) -> None:
        self.cfg = cfg
        self.port = cfg.port or free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.command = [
            PYTHON, "-m", "granian",
            "--interface", "wsgi",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--workers", str(cfg.workers),
            "--blocking-threads", str(cfg.blocking_threads),
            "--backpressure", str(cfg.backpressure),
            "--http", "1",
            "--no-ws",
            "--log-level", "warning",
            "config.wsgi:application",
        ]  # fmt: skip

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.command,
            cwd=self.cfg.app_dir,
            env=server_env(self.cfg),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as one
        )

    def wait_ready(self, key: str, timeout: float = 60.0) -> None:
        """Until every worker has loaded Django: a bad key must get its 401."""
        deadline = time.monotonic() + timeout
        body = orjson.dumps({"event": "x", "anonymousId": "a"})
        headers = {"Content-Type": "application/json", "Authorization": basic(key)}
        ok = 0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SetupFailed(
                    f"server exited with {self.proc.returncode}:\n{self.tail()}"
                )
            try:
                # A new connection each time so that every worker gets some.
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("POST", "/api/v1/track", body, headers)
                status = conn.getresponse().status
                conn.close()
                if status != 401:
                    raise SetupFailed(f"readiness probe got HTTP {status}, wanted 401")
                ok += 1
                if ok >= 4 * self.cfg.workers:
                    return
            except (OSError, http.client.HTTPException):
                time.sleep(0.1)
        raise SetupFailed(
            f"server did not answer within {timeout:.0f} s:\n{self.tail()}"
        )

    def pids(self) -> list[int]:
        """The granian process and all its descendants."""
        if self.proc is None:
            return []
        return descendants(self.proc.pid)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is not None:
            self._log.close()
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        except ProcessLookupError:
            pass
        finally:
            self._log.close()

    def tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


# -- CPU accounting (who was busy during a phase) --------------------------------------


def _proc_stat(pid: int) -> tuple[str, int, float] | None:
    """(comm, ppid, cpu seconds) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def _all_procs() -> dict[int, tuple[str, int, float]]:
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat:
                procs[int(entry)] = stat
    return procs


def descendants(root: int) -> list[int]:
    procs = _all_procs()
    found, frontier = [root], [root]
    while frontier:
        parent = frontier.pop()
        for pid, (_comm, ppid, _cpu) in procs.items():
            if ppid == parent:
                found.append(pid)
                frontier.append(pid)
    return found


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs since boot."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # user..steal; guest time is already in user
    return total - idle, total


@dataclass
class CpuSample:
    at: float
    client: float  # this process and its reaped children (rusage)
    procs: dict[int, tuple[str, float]]  # every other process: (comm, cpu seconds)
    server_pids: list[int]
    busy: int
    total: int


class PgMonitor:
    """What each PostgreSQL process is: a backend of this database (and which
    kind), a shared one (WAL writer, checkpointer...), or one serving another
    database (someone else's tests), which counts as "other"."""

    def __init__(self, cfg: Config) -> None:
        self.dbname = _db_name(cfg.database_url)
        self.conn = psycopg.connect(
            _with_db(cfg.database_url, "postgres"), autocommit=True
        )

    def kinds(self) -> dict[int, str]:
        rows = self.conn.execute(
            "SELECT pid, datname, backend_type FROM pg_stat_activity"
        ).fetchall()
        return {
            pid: (
                "postgres (other databases)"
                if datname is not None and datname != self.dbname
                else f"postgres: {kind}"
            )
            for pid, datname, kind in rows
        }

    def close(self) -> None:
        self.conn.close()


def cpu_sample(server: Server, pg: PgMonitor) -> CpuSample:
    kinds = pg.kinds()
    procs = _all_procs()
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy, total = _machine_jiffies()
    return CpuSample(
        at=time.perf_counter(),
        client=own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime,
        procs={
            pid: (kinds.get(pid, comm) if comm == "postgres" else comm, cpu)
            for pid, (comm, _ppid, cpu) in procs.items()
        },
        server_pids=server.pids(),
        busy=busy,
        total=total,
    )


def cpu_report(a: CpuSample, b: CpuSample) -> dict[str, Any]:
    """Who used the CPU between two samples, in cores (1.0 = one core busy).

    Per process, so that one that started or ended in between does not skew the
    sums; "other" is everything else on the machine (another job's tests, say), and
    the busiest of those are named, because they take CPU from the benchmark.
    """
    wall = max(b.at - a.at, 1e-9)
    ncpu = os.cpu_count() or 1
    machine = (b.busy - a.busy) / max(b.total - a.total, 1) * ncpu
    server = set(b.server_pids)
    mine = {os.getpid()} | set(descendants(os.getpid())) - server
    used: dict[int, float] = {}
    for pid, (_comm, cpu) in b.procs.items():
        before = a.procs.get(pid)
        used[pid] = max(0.0, cpu - (before[1] if before else 0.0)) / wall
    groups = {"server": 0.0, "postgres": 0.0, "redis": 0.0}
    others: dict[str, float] = {}
    pg_kinds: dict[str, float] = {}
    for pid, cores in used.items():
        comm = b.procs[pid][0]
        if pid in server:
            groups["server"] += cores
        elif pid in mine:
            continue  # counted by rusage as the client
        elif comm.startswith("postgres") and comm != "postgres (other databases)":
            # this database's backends, and the shared processes (WAL, checkpoints)
            groups["postgres"] += cores
            kind = comm.removeprefix("postgres: ")
            pg_kinds[kind] = pg_kinds.get(kind, 0.0) + cores
        elif comm.startswith("redis-server"):
            groups["redis"] += cores
        else:
            others[comm] = others.get(comm, 0.0) + cores
    parts = {"client": (b.client - a.client) / wall, **groups}
    # "other" from the machine's total, so kernel time and exited processes count.
    parts["other"] = max(0.0, machine - sum(parts.values()))
    parts["machine"] = machine
    report: dict[str, Any] = {k: round(v, 2) for k, v in parts.items()}
    report["cores"] = ncpu
    report["server_each"] = [round(used.get(p, 0.0), 2) for p in sorted(server)]
    report["postgres_each"] = {
        k: round(v, 2)
        for k, v in sorted(pg_kinds.items(), key=lambda kv: -kv[1])
        if v >= 0.01
    }
    top = sorted(others.items(), key=lambda kv: -kv[1])[:3]
    report["other_top"] = {comm: round(c, 2) for comm, c in top if c >= 0.01}
    return report


def fmt_cpu(c: dict[str, Any]) -> str:
    text = (
        f"cpu (cores of {c['cores']}): client {c['client']:.2f}, "
        f"granian {c['server']:.2f} "
        f"[{' + '.join(f'{x:.2f}' for x in c['server_each'])}], "
        f"postgres {c['postgres']:.2f} "
        f"[{', '.join(f'{k} {v:.2f}' for k, v in c['postgres_each'].items())}], "
        f"redis {c['redis']:.2f}, "
        f"other {c['other']:.2f}; machine {c['machine']:.2f}"
    )
    if c["other"] >= NOISY_CORES:
        top = ", ".join(f"{k} {v:.2f}" for k, v in c["other_top"].items())
        text += f"\n  NOT QUIET: other processes used {c['other']:.2f} cores ({top})"
    return text


def cpu_ms_per(cpu: dict[str, Any], per_second: float) -> dict[str, float]:
    """CPU milliseconds per request (or row) spent in each part.

    Less sensitive to a busy machine than the rates: the work per request stays the
    same when other processes take cores away.
    """
    rate = max(per_second, 1e-9)
    return {
        k: round(1000 * cpu[k] / rate, 3)
        for k in ("server", "postgres", "redis", "client")
    }


# -- realistic events ------------------------------------------------------------------

CATEGORIES = ["shoes", "shirts", "bags", "watches", "jackets", "hats", "socks", "belts"]
PAGES = ["/", "/collections/new", "/collections/sale", "/search", "/about", "/cart"]
AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.1 Safari/605.1.15",
]
ZONES = [
    ("en-US", "America/New_York"),
    ("en-GB", "Europe/London"),
    ("fr-FR", "Europe/Paris"),
]


def iso(t: dt.datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class User:
    anonymous_id: str
    ip: str
    agent: str
    locale: str
    timezone: str


def make_users(rng: random.Random, n: int) -> list[User]:
    users = []
    for _ in range(n):
        locale, tz = rng.choice(ZONES)
        users.append(
            User(
                anonymous_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                ip=f"203.0.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                agent=rng.choice(AGENTS),
                locale=locale,
                timezone=tz,
            )
        )
    return users


KINDS = ("page", "product_viewed", "add_to_cart")
MIX = (40, 45, 15)


def make_event(
    rng: random.Random,
    user: User,
    at: dt.datetime,
    run: str,
    n: int,
    *,
    track_only: bool,
) -> dict:
    """One Segment message: a page view, product_viewed or add_to_cart."""
    product = rng.randrange(1, 5000)
    category = rng.choice(CATEGORIES)
    kind = rng.choices(
        KINDS[1:] if track_only else KINDS, weights=MIX[1:] if track_only else MIX
    )[0]
    path = f"/products/{category}/{product}" if kind != "page" else rng.choice(PAGES)
    context = {
        "library": {"name": "analytics.js", "version": "5.2.0"},
        "ip": user.ip,
        "userAgent": user.agent,
        "locale": user.locale,
        "timezone": user.timezone,
        "page": {"path": path},
    }
    message: dict[str, Any] = {
        "type": "page" if kind == "page" else "track",
        "messageId": f"{run}-{n:08d}",
        "anonymousId": user.anonymous_id,
        "timestamp": iso(at),
        "context": context,
    }
    if kind == "page":
        message["name"] = path.strip("/").split("/")[0].title() or "Home"
        message["properties"] = {"path": path, "referrer": "https://www.google.com/"}
    else:
        message["event"] = kind
        message["properties"] = {
            "product_id": f"P{product:05d}",
            "name": f"{category.title()} model {product}",
            "category": category,
            "price": round(rng.uniform(5, 300), 2),
            "currency": "USD",
        }
        if kind == "add_to_cart":
            message["properties"]["quantity"] = rng.randint(1, 3)
            message["properties"]["cart_id"] = f"cart-{user.anonymous_id[:8]}"
    return message


class EventFactory:
    """Batches of realistic events from a pool of returning visitors."""

    def __init__(self, seed: int, users: int, run: str) -> None:
        self.rng = random.Random(seed)
        self.users = make_users(self.rng, users)
        self.run = run
        self.n = 0
        self.now = dt.datetime.now(dt.UTC)

    def events(
        self, count: int, distinct_users: int, *, track_only: bool = False
    ) -> list[dict]:
        people = self.rng.sample(self.users, min(distinct_users, len(self.users)))
        start = self.now - dt.timedelta(seconds=30)
        out = []
        for i in range(count):
            self.n += 1
            at = start + dt.timedelta(milliseconds=150 * i + self.rng.randrange(100))
            person = people[i % len(people)]
            out.append(
                make_event(
                    self.rng, person, at, self.run, self.n, track_only=track_only
                )
            )
        return out


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


# -- the load generators ---------------------------------------------------------------


@dataclass
class Request:
    path: str
    body: bytes
    message_ids: list[str] = field(default_factory=list)


@dataclass
class Result:
    """One request's outcome: status, response JSON (or text) and timings."""

    status: int
    accepted: int
    duplicates: int
    latency: float  # seconds, from the (intended) send time to the full response
    error: str = ""


def _parse(status: int, raw: bytes) -> tuple[int, int, str]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return 0, 0, raw[:200].decode(errors="replace")
    if status == 200 and isinstance(data, dict):
        return int(data.get("accepted", 0)), int(data.get("duplicates", 0)), ""
    return 0, 0, str(data)[:200]


class Connection:
    """A keep-alive HTTP/1.1 connection on a plain socket, reopened if the server
    closes it.

    Not http.client: it parses each response's headers with the email package, ~300 us
    of CPU a request, which on this machine's two cores is CPU the server does not
    get (at 1,500 req/s, a fifth of the machine). This sends prebuilt request bytes
    and reads just the status line, Content-Length (or chunks) and Connection: ~30 us.
    """

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
        self.sock: socket.socket | None = None
        self.buf = b""

    def _open(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buf = sock, b""
        return sock

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n".encode()
            + self.head
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        for attempt in (1, 2):
            fresh = self.sock is None
            try:
                sock = self.sock or self._open()
                sock.sendall(request)
                return self._response(sock)
            except (OSError, http.client.HTTPException):
                # A keep-alive connection the server closed: reopen it, once.
                self.close()
                if attempt == 2 or fresh or STOP.is_set():
                    raise
        raise AssertionError("unreachable")

    def _read_until(self, sock: socket.socket, marker: bytes) -> int:
        while (i := self.buf.find(marker)) < 0:
            self._fill(sock)
        return i

    def _fill(self, sock: socket.socket) -> None:
        chunk = sock.recv(65536)
        if not chunk:
            raise http.client.RemoteDisconnected("server closed the connection")
        self.buf += chunk

    def _take(self, sock: socket.socket, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill(sock)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _response(self, sock: socket.socket) -> tuple[int, bytes]:
        end = self._read_until(sock, b"\r\n\r\n")
        head = self.buf[:end].decode("latin-1").split("\r\n")
        self.buf = self.buf[end + 4 :]
        try:
            status = int(head[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            raise http.client.BadStatusLine(head[0]) from None
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = self._take(sock, int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                i = self._read_until(sock, b"\r\n")
                size = int(self.buf[:i].split(b";")[0], 16)
                self.buf = self.buf[i + 2 :]
                parts.append(self._take(sock, size))
                self._take(sock, 2)
                if size == 0:
                    break
            body = b"".join(parts)
        else:  # the body runs to the end of the connection
            while True:
                try:
                    self._fill(sock)
                except http.client.RemoteDisconnected:
                    break
            body, self.buf = self.buf, b""
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, body

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _sender(
    port: int,
    headers: dict[str, str],
    requests: list[Request],
    results: list[Result | None],
    claim: Any,
    start_gate: threading.Barrier,
    when: Any = None,
) -> None:
    """One client thread on its own keep-alive connection.

    ``claim()`` hands out request indexes (None: stop). With ``when(i)`` the request
    is sent at that perf_counter time and its latency counts from then.
    """
    conn = Connection(port, headers)
    start_gate.wait()
    try:
        while not STOP.is_set() and (i := claim()) is not None:
            if when is not None:
                t0 = when(i)
                delay = t0 - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            else:
                t0 = time.perf_counter()
            req = requests[i]
            try:
                status, raw = conn.post(req.path, req.body)
            except (OSError, http.client.HTTPException) as exc:
                results[i] = Result(0, 0, 0, time.perf_counter() - t0, repr(exc))
                continue
            accepted, dups, err = _parse(status, raw)
            results[i] = Result(status, accepted, dups, time.perf_counter() - t0, err)
    finally:
        conn.close()


def _run_senders(threads: int, target: Any, start: Any) -> None:
    # Every sender opens its connection, then waits here; when all have, start()
    # runs once and they all go.
    start_gate = threading.Barrier(threads + 1, action=start)
    pool = [
        threading.Thread(target=target, args=(start_gate,), daemon=True)
        for _ in range(threads)
    ]
    for t in pool:
        t.start()
    start_gate.wait(timeout=60)
    try:
        for t in pool:
            while t.is_alive():  # a timed join, so that Ctrl-C gets through
                t.join(0.5)
    except BaseException:
        STOP.set()  # the senders finish the request in hand and quit
        raise


def closed_loop(
    port: int,
    headers: dict[str, str],
    requests: list[Request],
    concurrency: int,
    max_seconds: float | None = None,
) -> tuple[list[Result], float]:
    """Send requests with ``concurrency`` in flight, each thread waiting for its answer.

    Stops taking new requests after ``max_seconds``. Returns the results of the
    requests sent (a prefix of ``requests``) and the seconds it took.
    """
    results: list[Result | None] = [None] * len(requests)
    lock = threading.Lock()
    state = {"next": 0, "began": 0.0}

    def claim() -> int | None:
        with lock:
            i = state["next"]
            if i >= len(requests):
                return None
            if max_seconds and time.perf_counter() - state["began"] > max_seconds:
                return None
            state["next"] = i + 1
            return i

    def start() -> None:
        state["began"] = time.perf_counter()

    _run_senders(
        concurrency,
        lambda gate: _sender(port, headers, requests, results, claim, gate),
        start,
    )
    seconds = time.perf_counter() - state["began"]
    sent = results[: state["next"]]
    return [r or Result(0, 0, 0, 0.0, "no result") for r in sent], seconds


@dataclass
class OpenLoopRun:
    results: list[Result]
    seconds: float  # from the first intended send to the last answer
    gave_up: bool  # fell more than max_lag behind the schedule and stopped
    worst_lag: float  # the most a send started behind its intended time


def open_loop(
    port: int,
    headers: dict[str, str],
    requests: list[Request],
    rate: float,
    threads: int,
    max_lag: float = 5.0,
) -> OpenLoopRun:
    """Send request i at start + i/rate, whatever happened to the earlier ones.

    Latency counts from the intended send time, so a stalled server is charged for
    every request it delayed (no coordinated omission). ``threads`` must exceed the
    requests in flight at once (rate x latency), or sends start late: the worst
    lag is reported. If a send would start ``max_lag`` seconds late the server
    cannot keep up; the run stops there rather than queue for minutes.
    """
    results: list[Result | None] = [None] * len(requests)
    lock = threading.Lock()
    state: dict[str, Any] = {"next": 0, "t0": 0.0, "lag": 0.0, "gave_up": False}

    def when(i: int) -> float:
        return state["t0"] + i / rate

    def claim() -> int | None:
        with lock:
            i = state["next"]
            if i >= len(requests) or state["gave_up"]:
                return None
            lag = time.perf_counter() - when(i)
            if lag > max_lag:
                state["gave_up"] = True
                return None
            state["lag"] = max(state["lag"], lag)
            state["next"] = i + 1
            return i

    def start() -> None:
        state["t0"] = time.perf_counter() + 0.05

    _run_senders(
        threads,
        lambda gate: _sender(port, headers, requests, results, claim, gate, when),
        start,
    )
    seconds = time.perf_counter() - state["t0"]
    sent = results[: state["next"]]
    return OpenLoopRun(
        results=[r or Result(0, 0, 0, 0.0, "no result") for r in sent],
        seconds=seconds,
        gave_up=state["gave_up"],
        worst_lag=state["lag"],
    )


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = max(0, math.ceil(p / 100 * len(sorted_values)) - 1)
    return sorted_values[k]


def latency_ms(results: list[Result]) -> dict[str, float]:
    lat = sorted(r.latency * 1000 for r in results)
    return {
        "p50": round(percentile(lat, 50), 2),
        "p90": round(percentile(lat, 90), 2),
        "p99": round(percentile(lat, 99), 2),
        "max": round(lat[-1], 2) if lat else float("nan"),
    }


# -- the COPY baseline -----------------------------------------------------------------

COPY_SQL = (
    "COPY events_event (contact_id, source_id, type, name, properties, context, "
    "timestamp, received_at, message_id) FROM STDIN"
)


def _copy_text(value: str) -> str:
    """A value for COPY's text format."""
    return (
        value.replace("\\", "\\\\")
        .replace("\t", "\\t")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )


def copy_baseline(
    cfg: Config,
    source_id: int,
    factory: EventFactory,
    rows: int,
    measure: Callable[[], Callable[[], dict[str, Any]]],
) -> dict[str, Any]:
    """COPY event rows, shaped as the API stores them, into events_event; rows/s.

    The rows are encoded before the clock starts, so the figure is what PostgreSQL
    takes in (one COPY, one commit, same table and indexes), not Python's speed.
    ``measure()`` starts a CPU measurement and returns the function that ends it
    (called while the COPY's connection, hence its backend process, still exists).
    """
    # The contacts the rows belong to: one per visitor of the pool, made for this.
    with psycopg.connect(cfg.database_url) as conn:
        ids = conn.execute(
            "INSERT INTO contacts_contact (first_name, last_name, phone, timezone,"
            " locale, attributes, email_consent, score, created_at, first_seen_at)"
            " SELECT '', '', '', '', '', '{}', 'subscribed', 0, now(), now()"
            " FROM generate_series(1, %s) RETURNING id",
            (len(factory.users),),
        ).fetchall()
    contact_of = {
        u.anonymous_id: row[0] for u, row in zip(factory.users, ids, strict=True)
    }

    # The same kind of messages the API gets, as rows the way the API stores them.
    messages: list[dict] = []
    while len(messages) < rows:
        messages.extend(factory.events(cfg.batch_size, cfg.users_per_batch))
    received = iso(dt.datetime.now(dt.UTC))
    encode_began = time.perf_counter()
    lines = []
    for m in messages[:rows]:
        props = dict(m["properties"])
        if m["type"] == "page" and m.get("name"):
            props["name"] = m["name"]
        fields = (
            str(contact_of[m["anonymousId"]]),
            str(source_id),
            m["type"],
            m.get("event") or m["type"],
            orjson.dumps(props).decode(),
            orjson.dumps(m["context"]).decode(),
            m["timestamp"],
            received,
            m["messageId"],
        )
        lines.append("\t".join(_copy_text(f) for f in fields))
    payload = ("\n".join(lines) + "\n").encode()
    encode_seconds = time.perf_counter() - encode_began

    with psycopg.connect(cfg.database_url) as conn:
        conn.execute("SELECT 1")
        done = measure()
        began = time.perf_counter()
        with conn.cursor() as cur, cur.copy(COPY_SQL) as copy:
            for start in range(0, len(payload), 1 << 20):
                copy.write(payload[start : start + (1 << 20)])
        conn.commit()
        seconds = time.perf_counter() - began
        cpu = done()
        stored = conn.execute(
            "SELECT count(*) FROM events_event WHERE source_id = %s", (source_id,)
        ).fetchone()[0]
    if stored != rows:
        raise BenchBroken(f"COPY baseline: {stored} rows stored, {rows} written")
    return {
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds),
        "encode_seconds": round(encode_seconds, 3),
        "rows_per_s_with_encoding": round(rows / (seconds + encode_seconds)),
        "cpu": cpu,
    }


# -- the run ---------------------------------------------------------------------------


def build_batches(cfg: Config, factory: EventFactory, count: int) -> list[Request]:
    out = []
    for _ in range(count):
        events = factory.events(cfg.batch_size, cfg.users_per_batch)
        body = orjson.dumps({"batch": events, "sentAt": iso(dt.datetime.now(dt.UTC))})
        out.append(Request("/api/v1/batch", body, [e["messageId"] for e in events]))
    return out


def build_tracks(factory: EventFactory, count: int) -> list[Request]:
    out = []
    for event in factory.events(count, len(factory.users), track_only=True):
        event = {**event, "sentAt": event["timestamp"]}
        out.append(Request("/api/v1/track", orjson.dumps(event), [event["messageId"]]))
    # ``events`` takes people in turn; shuffle so that neighbours differ.
    factory.rng.shuffle(out)
    return out


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Ledger:
    """What the server said it accepted, to check against the table at the end."""

    def __init__(self) -> None:
        self.message_ids: set[str] = set()
        self.requests = 0  # requests that stored something: one RQ job each
        self.problems: list[str] = []
        self.errors: dict[str, int] = {}

    def record(
        self,
        phase: str,
        reqs: list[Request],
        results: list[Result],
        *,
        status: int = 200,
        fresh: bool = True,
    ) -> None:
        """Check one phase's answers; ``fresh``: every event must be accepted."""
        bad = [r for r in results if r.status != status]
        self.errors[phase] = self.errors.get(phase, 0) + len(bad)
        if bad:
            kinds: dict[str, int] = {}
            for r in bad:
                label = f"HTTP {r.status} " + " ".join(r.error.split())[:100]
                kinds[label] = kinds.get(label, 0) + 1
            listing = "; ".join(
                f"{n} x {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])
            )
            self.problems.append(
                f"{phase}: {len(bad)} of {len(results)} not HTTP {status}: {listing}"
            )
        if status != 200:
            return
        for q, r in zip(reqs, results, strict=True):
            if r.status != 200:
                continue
            if r.accepted:
                self.requests += 1
                self.message_ids.update(q.message_ids)
            if fresh and (r.accepted != len(q.message_ids) or r.duplicates):
                self.problems.append(
                    f"{phase}: {len(q.message_ids)} new events sent, "
                    f"{r.accepted} accepted, {r.duplicates} duplicates"
                )
            if not fresh and r.accepted:
                self.problems.append(
                    f"{phase}: a re-sent request stored {r.accepted} events again"
                )


def run(cfg: Config) -> dict[str, Any]:
    started = time.perf_counter()
    report: dict[str, Any] = {
        "mode": "small" if cfg.small else "full",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "reference_loop_ms": [python_reference_ms()],
        },
        "app_dir": str(cfg.app_dir),
        "config": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(cfg).items()
            if k not in {"database_url", "redis_url"}
        },
        "warnings": [],
    }
    warnings: list[str] = report["warnings"]
    ledger = Ledger()

    log(
        f"database {_db_name(cfg.database_url)}: recreating; "
        f"Redis {cfg.redis_url}: flushing"
    )
    recreate_database(cfg)
    rds = flush_redis(cfg)
    # Someone else's FLUSHALL (or FLUSHDB on this db) during the run would drop our
    # jobs; this key tells that apart from ingestion losing them.
    rds.set(SENTINEL, "1")
    log(f"migrating ({cfg.app_dir})")
    manage(cfg, "migrate", "--no-input", "-v", "0")
    sources = create_sources(cfg)
    api_source, key = sources["api_id"], sources["api_key"]
    headers = {"Content-Type": "application/json", "Authorization": basic(key)}
    bad_key = "sk_not-a-real-key"
    bad_headers = {**headers, "Authorization": basic(bad_key)}

    log("building request bodies")
    # About four batches per visitor: most batches meet people seen before (identity
    # lookups hit), some meet new ones (contacts and identities created).
    users = cfg.users or max(
        cfg.users_per_batch * 2, cfg.batches * cfg.users_per_batch // 4
    )
    factory = EventFactory(cfg.seed, users, run="b")
    warm = max(2, cfg.batch_concurrency)
    batches = build_batches(cfg, factory, warm + cfg.batches)
    warm_batches, batches = batches[:warm], batches[warm:]
    report["event_bytes_avg"] = round(
        sum(len(b.body) for b in batches) / (len(batches) * cfg.batch_size)
    )
    # Single calls: about five per visitor.
    track_factory = EventFactory(
        cfg.seed + 1, max(100, cfg.single_requests // 5), run="t"
    )
    single_warm = max(50, cfg.single_concurrency * 4)
    open_count = int(cfg.open_rate * cfg.open_seconds)
    tracks = build_tracks(track_factory, single_warm + cfg.single_requests + open_count)
    track_warm = tracks[:single_warm]
    track_sat = tracks[single_warm : single_warm + cfg.single_requests]
    track_open = tracks[single_warm + cfg.single_requests :]
    floor_reqs = [Request("/api/v1/track", r.body) for r in track_sat]

    server = Server(cfg, OUT_DIR / "ingest-server.log")
    report["server_command"] = "python " + " ".join(server.command[1:])
    log(
        f"starting granian: {cfg.workers} workers x {cfg.blocking_threads} threads, "
        f"backpressure {cfg.backpressure}, port {server.port}"
    )
    server.start()
    monitor = None
    try:
        server.wait_ready(key=bad_key)
        monitor = PgMonitor(cfg)

        def sample() -> CpuSample:
            return cpu_sample(server, monitor)

        def measure_cpu(phase: str, c0: CpuSample) -> dict[str, Any]:
            cpu = cpu_report(c0, sample())
            log("  " + fmt_cpu(cpu))
            if cpu["other"] >= NOISY_CORES:
                top = ", ".join(f"{k} {v:.2f}" for k, v in cpu["other_top"].items())
                warnings.append(
                    f"{phase}: the machine was not quiet, other processes used "
                    f"{cpu['other']:.2f} cores ({top})"
                )
            # server_each: granian's main process, then its workers
            if len(cpu["server_each"]) > 2 and cpu["server"] > 0.5:
                share = max(cpu["server_each"]) / cpu["server"]
                if share > 0.8:
                    # Keep-alive connections stay with the worker that accepted
                    # them, and the kernel may hand nearly all to one.
                    warnings.append(
                        f"{phase}: one granian worker did {share:.0%} of the work "
                        "(it accepted most connections), so the figure understates "
                        "the server; run again"
                    )
            return cpu

        # (a) batch ingestion ---------------------------------------------------------
        log(f"batch: warm-up ({warm} requests)")
        res, _ = closed_loop(server.port, headers, warm_batches, cfg.batch_concurrency)
        ledger.record("batch warm-up", warm_batches, res)
        log(
            f"batch: {cfg.batches} x {cfg.batch_size} events "
            f"(~{report['event_bytes_avg']} B each), {cfg.batch_concurrency} in flight"
        )
        c0 = sample()
        res, secs = closed_loop(
            server.port, headers, batches, cfg.batch_concurrency, cfg.max_seconds
        )
        cpu = measure_cpu("batch", c0)
        sent = batches[: len(res)]
        ledger.record("batch", sent, res)
        accepted = sum(r.accepted for r in res)
        report["batch"] = {
            "requests": len(res),
            "events": accepted,
            "seconds": round(secs, 3),
            "events_per_s": round(accepted / secs),
            "requests_per_s": round(len(res) / secs, 1),
            "latency_ms": latency_ms(res),
            "cpu": cpu,
            "cpu_ms_per_request": cpu_ms_per(cpu, len(res) / secs),
        }
        b = report["batch"]
        log(
            f"  {b['events_per_s']:,} events/s ({b['requests_per_s']} req/s), "
            f"p50 {b['latency_ms']['p50']} ms, p99 {b['latency_ms']['p99']} ms"
            + (
                f" (stopped after {cfg.max_seconds:g} s)"
                if len(res) < cfg.batches
                else ""
            )
        )

        # Dedupe: batches sent again are all duplicates and change nothing.
        again = [q for q, r in zip(sent, res, strict=True) if r.status == 200][:5]
        res, _ = closed_loop(server.port, headers, again, 1)
        ledger.record("re-sent batch", again, res, fresh=False)
        if any(
            r.duplicates != len(q.message_ids) for q, r in zip(again, res, strict=True)
        ):
            ledger.problems.append(
                "re-sent batch: not every event reported as a duplicate: "
                + ", ".join(f"{r.accepted}/{r.duplicates}" for r in res)
            )

        # (4) the COPY baseline --------------------------------------------------------
        log(f"COPY baseline: {cfg.copy_rows:,} rows into events_event")
        copy_factory = EventFactory(cfg.seed + 2, users, run="c")

        def measure_copy() -> Callable[[], dict[str, Any]]:
            c0 = sample()
            return lambda: measure_cpu("COPY", c0)

        report["copy"] = copy_baseline(
            cfg, sources["copy_id"], copy_factory, cfg.copy_rows, measure_copy
        )
        c = report["copy"]
        c["cpu_ms_per_row"] = cpu_ms_per(c["cpu"], c["rows_per_s"])
        log(
            f"  {c['rows_per_s']:,} rows/s "
            f"({c['rows_per_s_with_encoding']:,} counting the client's encoding)"
        )
        b["pct_of_copy"] = round(100 * b["events_per_s"] / c["rows_per_s"], 1)

        # (b) single calls: the floor, track at saturation, track open loop ------------
        log("single: warm-up")
        res, _ = closed_loop(server.port, headers, track_warm, cfg.single_concurrency)
        ledger.record("track warm-up", track_warm, res)

        log(
            f"floor: /api/v1/track with an unknown key (401: no DB, no Redis), "
            f"{cfg.single_concurrency} in flight"
        )
        c0 = sample()
        res, secs = closed_loop(
            server.port,
            bad_headers,
            floor_reqs,
            cfg.single_concurrency,
            cfg.max_seconds,
        )
        cpu = measure_cpu("401 floor", c0)
        ledger.record("401 floor", floor_reqs[: len(res)], res, status=401)
        report["floor_401"] = {
            "requests": len(res),
            "requests_per_s": round(len(res) / secs),
            "latency_ms": latency_ms(res),
            "cpu": cpu,
            "cpu_ms_per_request": cpu_ms_per(cpu, len(res) / secs),
        }
        f = report["floor_401"]
        log(
            f"  {f['requests_per_s']:,} req/s, p50 {f['latency_ms']['p50']} ms, "
            f"p99 {f['latency_ms']['p99']} ms"
        )

        log(
            f"track: up to {len(track_sat):,} calls, {cfg.single_concurrency} in flight"
        )
        c0 = sample()
        res, secs = closed_loop(
            server.port, headers, track_sat, cfg.single_concurrency, cfg.max_seconds
        )
        cpu = measure_cpu("track", c0)
        ledger.record("track", track_sat[: len(res)], res)
        report["single"] = {
            "requests": len(res),
            "seconds": round(secs, 3),
            "requests_per_s": round(len(res) / secs),
            "latency_ms": latency_ms(res),
            "pct_of_floor": round(100 * len(res) / secs / f["requests_per_s"], 1),
            "cpu": cpu,
            "cpu_ms_per_request": cpu_ms_per(cpu, len(res) / secs),
        }
        s = report["single"]
        log(
            f"  {s['requests_per_s']:,} req/s, p50 {s['latency_ms']['p50']} ms, "
            f"p99 {s['latency_ms']['p99']} ms"
        )

        log(
            f"open loop: {cfg.open_rate:g} req/s offered for {cfg.open_seconds:g} s "
            f"({open_count} calls, {cfg.open_threads} sender threads)"
        )
        c0 = sample()
        ol = open_loop(
            server.port, headers, track_open, cfg.open_rate, cfg.open_threads
        )
        cpu = measure_cpu("open loop", c0)
        ledger.record("open loop", track_open[: len(ol.results)], ol.results)
        report["open_loop"] = {
            "offered_per_s": cfg.open_rate,
            "requests": len(ol.results),
            "achieved_per_s": round(len(ol.results) / ol.seconds, 1),
            "latency_ms": latency_ms(ol.results),
            "gave_up": ol.gave_up,
            "worst_send_lag_ms": round(ol.worst_lag * 1000, 2),
            "cpu": cpu,
        }
        o = report["open_loop"]
        log(
            f"  achieved {o['achieved_per_s']} req/s, p50 {o['latency_ms']['p50']} ms, "
            f"p99 {o['latency_ms']['p99']} ms, max {o['latency_ms']['max']} ms"
        )
        if ol.gave_up:
            warnings.append(
                f"open loop: the server fell over 5 s behind {cfg.open_rate:g} req/s "
                f"after {len(ol.results)} calls; the run stopped there, so its p99 "
                "understates the latency a longer run would see"
            )
    finally:
        log("stopping the server")
        server.stop()
        if monitor is not None:
            monitor.close()

    # (5) correctness: every accepted event stored once, one job per request ---------
    with psycopg.connect(cfg.database_url) as conn:
        stored = [
            r[0]
            for r in conn.execute(
                "SELECT message_id FROM events_event WHERE source_id = %s",
                (api_source,),
            )
        ]
        contacts = conn.execute("SELECT count(*) FROM contacts_contact").fetchone()[0]
    stored_set = set(stored)
    lost = len(ledger.message_ids - stored_set)
    unexpected = len(stored_set - ledger.message_ids)
    doubled = len(stored) - len(stored_set)
    if lost or unexpected or doubled:
        ledger.problems.append(
            f"table check: {len(ledger.message_ids)} events accepted, "
            f"{len(stored)} rows: {lost} lost, {unexpected} never acknowledged, "
            f"{doubled} stored twice"
        )
    jobs = rds.llen("rq:queue:events")
    if not rds.exists(SENTINEL):
        jobs = None
        warnings.append(
            f"Redis db {cfg.redis_url} was flushed by another process during the "
            "run: RQ jobs not checked (give the benchmark a Redis db nobody else uses)"
        )
    elif jobs != ledger.requests:
        ledger.problems.append(
            f"RQ: {jobs} jobs on the events queue for {ledger.requests} requests "
            "that stored events (one each expected)"
        )
    report["check"] = {
        "events_accepted": len(ledger.message_ids),
        "rows": len(stored),
        "lost": lost,
        "unexpected": unexpected,
        "duplicated": doubled,
        "contacts": contacts,
        "rq_jobs": jobs,
        "requests_that_stored": ledger.requests,
    }
    report["errors"] = ledger.errors
    report["problems"] = ledger.problems
    report["machine"]["reference_loop_ms"].append(python_reference_ms())
    report["seconds_total"] = round(time.perf_counter() - started, 1)
    return report


# -- reporting -------------------------------------------------------------------------


def verdicts(report: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(figure, measured, target, baseline, PASS / MISS / n/a / "") rows."""
    b, c = report["batch"], report["copy"]
    s, f, o = report["single"], report["floor_401"], report["open_loop"]
    cfg = report["config"]

    def status(ok: bool, applies: bool = True) -> str:
        return ("PASS" if ok else "MISS") if applies else "n/a"

    bm, sm, fm = (
        b["cpu_ms_per_request"],
        s["cpu_ms_per_request"],
        f["cpu_ms_per_request"],
    )
    per_event = 1000 / cfg["batch_size"]  # ms per request -> us per event
    rate = o["offered_per_s"]
    at_target_rate = rate >= TARGETS["open_rate"]
    p99 = f"{o['latency_ms']['p99']} ms"
    if o["gave_up"]:
        p99 = f">= {p99} (overloaded)"
    return [
        (
            "batch ingestion (events/s)",
            f"{b['events_per_s']:,}",
            f">= {TARGETS['batch_events_per_s']:,}",
            f"COPY {c['rows_per_s']:,} rows/s",
            status(b["events_per_s"] >= TARGETS["batch_events_per_s"]),
        ),
        (
            "batch as % of COPY",
            f"{b['pct_of_copy']}%",
            f">= {TARGETS['batch_pct_of_copy']:g}%",
            "COPY = 100%",
            status(b["pct_of_copy"] >= TARGETS["batch_pct_of_copy"]),
        ),
        (
            "  batch latency p50 / p99",
            f"{b['latency_ms']['p50']} / {b['latency_ms']['p99']} ms",
            "-",
            f"{cfg['batch_concurrency']} in flight",
            "",
        ),
        (
            "  CPU per event: granian / postgres",
            f"{bm['server'] * per_event:.0f} / {bm['postgres'] * per_event:.0f} us",
            "-",
            f"COPY: postgres {c['cpu_ms_per_row']['postgres'] * 1000:.0f} us/row",
            "",
        ),
        (
            "single track at saturation (req/s)",
            f"{s['requests_per_s']:,}",
            f">= {TARGETS['single_rps']:,}",
            f"401 path {f['requests_per_s']:,} req/s",
            status(s["requests_per_s"] >= TARGETS["single_rps"]),
        ),
        (
            "  its latency p50 / p99",
            f"{s['latency_ms']['p50']} / {s['latency_ms']['p99']} ms",
            "-",
            f"401: {f['latency_ms']['p50']} / {f['latency_ms']['p99']} ms",
            "",
        ),
        (
            "  CPU per call: granian / postgres",
            f"{sm['server']:.2f} / {sm['postgres']:.2f} ms",
            "-",
            f"401: granian {fm['server']:.2f} ms",
            "",
        ),
        (
            f"track p50 at {rate:g} req/s offered",
            f"{o['latency_ms']['p50']} ms",
            "-",
            f"achieved {o['achieved_per_s']} req/s",
            "",
        ),
        (
            f"track p99 at {rate:g} req/s offered",
            p99,
            f"<= {TARGETS['open_p99_ms']:g} ms at {TARGETS['open_rate']}/s",
            f"max {o['latency_ms']['max']} ms",
            status(
                o["latency_ms"]["p99"] <= TARGETS["open_p99_ms"] and not o["gave_up"],
                at_target_rate,
            ),
        ),
    ]


def python_reference_ms() -> float:
    """CPU milliseconds of a fixed pure-Python loop (5M additions) in this process.

    These machines' speed drifts (by up to 2x within an hour, seen here), and the
    targets are absolute: this says how fast the machine ran while it was measured.
    """
    started = time.thread_time()
    total = 0
    for i in range(5_000_000):
        total += i
    return (time.thread_time() - started) * 1000


def print_table(report: dict[str, Any], cfg: Config) -> None:
    rows = verdicts(report)
    report["verdicts"] = {r[0].strip(): r[4] for r in rows if r[4]}
    head = ("figure", "measured", "target", "baseline", "")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]
    line = "  ".join("-" * w for w in widths)
    print()
    print(f"Ingestion benchmark, {report['mode']} mode: {report['server_command']}")
    print(line)
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip())
    print(line)
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    print(line)
    ck = report["check"]
    jobs = "not checked" if ck["rq_jobs"] is None else f"{ck['rq_jobs']:,}"
    print(
        f"check: {ck['events_accepted']:,} events accepted, {ck['rows']:,} rows "
        f"stored ({ck['lost']} lost, {ck['duplicated']} twice); RQ jobs {jobs} for "
        f"{ck['requests_that_stored']:,} requests; {ck['contacts']:,} contacts"
    )
    for phase in ("batch", "single"):
        print(f"{phase} {fmt_cpu(report[phase]['cpu'])}")
    start_ms, end_ms = report["machine"]["reference_loop_ms"]
    print(
        f"machine speed: the reference loop took {start_ms:.0f} ms at the start and "
        f"{end_ms:.0f} ms at the end (lower is faster; see bench/README.md)"
    )
    for warning in report["warnings"]:
        print(f"warning: {warning}")
    if report["mode"] == "small":
        print("small mode: short runs, the figures are indicative only")
    print(f"total {report['seconds_total']} s; JSON in {cfg.json_out}")


# -- --profile: the same requests, in process ------------------------------------------


def profile(cfg: Config) -> None:
    """Where a request's CPU goes: the phase's requests through Django's WSGI handler
    in this process, without granian, counted and then profiled.

    The set-up is the benchmark's (database recreated, migrated, sources). The batch
    requests come from the same visitors as the batch phase; the track calls, like
    the track phase, meet a new visitor about one call in five.
    """
    import cProfile
    import io
    import pstats

    log(f"database {_db_name(cfg.database_url)}: recreating; migrating")
    recreate_database(cfg)
    flush_redis(cfg)
    manage(cfg, "migrate", "--no-input", "-v", "0")
    key = create_sources(cfg)["api_key"]
    n = cfg.profile_requests
    if cfg.profile == "batch":
        users = cfg.users or max(cfg.users_per_batch * 2, n * cfg.users_per_batch // 4)
        requests = build_batches(cfg, EventFactory(cfg.seed, users, run="b"), n + 20)
    else:
        factory = EventFactory(cfg.seed + 1, max(100, n // 5), run="t")
        requests = build_tracks(factory, n + 50)
    warm, requests = requests[: len(requests) - n], requests[len(requests) - n :]

    os.environ.update(server_env(cfg))
    sys.path.insert(0, str(cfg.app_dir))
    os.chdir(cfg.app_dir)
    import django

    django.setup()
    # What granian serves: the tracking calls' door in front of Django.
    from config.wsgi import application as app

    auth = basic(key)
    trips = {"postgres": 0, "redis": 0}

    def counting(cls: type, name: str, kind: str) -> None:
        original = getattr(cls, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            trips[kind] += 1
            return original(*args, **kwargs)

        setattr(cls, name, counted)

    # One wait() per exchange with the server; one send per Redis command or pipeline.
    counting(psycopg.Connection, "wait", "postgres")
    counting(redis.connection.AbstractConnection, "send_packed_command", "redis")

    def call(req: Request) -> None:
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": req.path,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(req.body),
            "CONTENT_LENGTH": str(len(req.body)),
            "CONTENT_TYPE": "application/json",
            "HTTP_AUTHORIZATION": auth,
        }
        status: list[str] = []
        body = b"".join(app(environ, lambda s, headers, exc=None: status.append(s)))
        if not status[0].startswith("200"):
            raise BenchBroken(f"{req.path} answered {status[0]}: {body[:300]!r}")

    for req in warm:
        call(req)
    from django.db import connection

    backend = connection.connection.info.backend_pid

    def postgres_cpu() -> float:
        return (_proc_stat(backend) or ("", 0, 0.0))[2]

    half = n // 2
    trips.update(postgres=0, redis=0)
    started, postgres_started = time.thread_time(), postgres_cpu()
    for req in requests[:half]:
        call(req)
    cpu_us = (time.thread_time() - started) / half * 1e6
    postgres_us = (postgres_cpu() - postgres_started) / half * 1e6
    per = cfg.batch_size if cfg.profile == "batch" else 1
    log(
        f"{cfg.profile}: {half} requests; CPU a request: Python {cpu_us:,.0f} us "
        f"({cpu_us / per:,.1f} an event), its PostgreSQL backend {postgres_us:,.0f} "
        f"us ({postgres_us / per:,.1f}); round trips a request: PostgreSQL "
        f"{trips['postgres'] / half:.2f}, Redis {trips['redis'] / half:.2f}"
    )
    profiler = cProfile.Profile(time.thread_time)
    profiler.enable()
    for req in requests[half:]:
        call(req)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
    print(f"\ncProfile of {n - half} more requests (CPU time, with its overhead):")
    print(out.getvalue())


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    # SIGTERM behaves like Ctrl-C: the finally blocks stop the server. (SIGINT is set
    # too: a shell starts background jobs with it ignored.)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        lock = lock_database(cfg)
        try:
            if cfg.profile:
                profile(cfg)
                return 0
            report = run(cfg)
        finally:
            lock.close()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SetupFailed as exc:
        print(f"SET-UP FAILED: {exc}", file=sys.stderr)
        return 2
    except BenchBroken as exc:
        print(f"BROKEN: {exc}", file=sys.stderr)
        return 1
    print_table(report, cfg)
    cfg.json_out.parent.mkdir(parents=True, exist_ok=True)
    cfg.json_out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    if report["problems"]:
        print("\nBROKEN:", file=sys.stderr)
        for problem in report["problems"]:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
