#!/usr/bin/env python
"""Workflow engine benchmark: event -> email latency under load, and steps/s.

What it does, in order (see bench/README.md for how to run it):

1. Drops and recreates its own PostgreSQL database (``nudge_bench_engine``) and
   flushes its own Redis db (``/11``), runs ``migrate`` in this process (Django is set
   up here to create the data and enrollments) and creates a server source, an email
   template, the workflows and the contacts.
2. Starts the real processes, each in its own process group, all stopped at the end
   (also on Ctrl-C / SIGTERM): granian (WSGI, 2 workers), N RQ ``SimpleWorker``s on
   ``events workflows email default`` and one ``nudge_scheduler``. The workers send
   email through ``bench._backend.EmailBackend``, which records when each message was
   handed over.
3. (a) latency: a workflow triggered by ``bench_signup`` whose first step sends an
   email. Probe ``track`` calls (5/s, each for its own contact) are sent open loop
   while another process ingests a background load of ``page`` events (200 events/s,
   over many contacts). Each probe's latency runs from the moment its HTTP call was
   sent to the moment its email reached the backend. Baseline, in the same run: a
   no-op RQ job enqueued from here at the same rate (between the probes), run by the
   same workers under the same load, enqueue -> run. Per-hop timings come from the
   rows' timestamps (event received / processed, step run, message claimed).
4. (b) steps/s: K enrollments (``enrollment_start(advance=False)``) in a workflow of
   four instant steps (branch -> update_contact -> split -> exit), then
   ``enqueue_advance(ids)`` (200 ids per job) and the clock runs until none is
   active or waiting; steps/s = StepRun rows / elapsed. Baseline: the same rows
   written with plain SQL (psycopg), one transaction per enrollment, two processes.
   Then, in this process: queries per enrollment and steps/s of one process without
   RQ (and with ``--profile``, a cProfile of ``advance_enrollments``).
5. Prints a table against the targets in DESIGN.md and writes bench/out/engine.json.

``--only latency`` / ``--only engine`` runs one part; ``--wait-quiet S`` waits up to S
seconds before each phase for other processes to go quiet (on a shared machine the
figures are otherwise not comparable; each phase reports who used the CPU).

Exit status: 0 whenever the run completed (a MISS is a measurement, not a failure),
1 if something broke (emails missing or sent twice, enrollments stuck or failed, RQ
jobs failed, HTTP errors), 2 if set-up failed (migrate, the server or the workers did
not start), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import datetime as dt
import http.client
import io
import math
import multiprocessing
import os
import pstats
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
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
    "p50_ms": 100.0,
    "p99_ms": 500.0,
    "load_events_per_s": 200,
    "steps_per_s": 2_000,
    "workers": 2,
}
QUEUES = ("events", "workflows", "email", "default")
BACKEND = "bench._backend.EmailBackend"
NOOP_JOB = "bench._backend.job_done"
PROBE_EVENT = "bench_signup"
CLK_TCK = os.sysconf("SC_CLK_TCK")
NOISY_CORES = 0.2

PROBE_WORKFLOW = {
    "trigger": {"type": "event", "event": PROBE_EVENT},
    "reentry": {"rule": "every_time"},
    "steps": [{"key": "send", "type": "send_email", "config": {"template": "Bench"}}],
}
ENGINE_WORKFLOW = {
    "trigger": {"type": "manual"},
    "reentry": {"rule": "every_time"},
    "steps": [
        {
            "key": "check",
            "type": "branch",
            "config": {"condition": {"attribute": "plan", "op": "eq", "value": "pro"}},
            "next": {"yes": "tag", "no": "tag"},
        },
        {
            "key": "tag",
            "type": "update_contact",
            "config": {"set": {"bench_seen": True}},
            "next": {"next": "ab"},
        },
        {
            "key": "ab",
            "type": "split",
            "config": {
                "variants": [{"name": "A", "weight": 50}, {"name": "B", "weight": 50}]
            },
            "next": {"A": "done", "B": "done"},
        },
        {"key": "done", "type": "exit", "config": {"reason": "bench"}},
    ],
}
STEPS_PER_ENROLLMENT = len(ENGINE_WORKFLOW["steps"])


class BenchBroken(Exception):
    """Something went wrong that makes the figures meaningless (exit 1)."""


class SetupFailed(Exception):
    """The environment could not be prepared (exit 2)."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- configuration ---------------------------------------------------------------------


@dataclass
class Config:
    small: bool
    database_url: str
    redis_url: str
    rq_workers: int
    web_workers: int
    blocking_threads: int
    port: int
    probe_rate: float
    probe_seconds: float
    load_rate: float
    load_batch: int
    load_contacts: int
    load_threads: int
    lead_seconds: float
    baseline_queue: str
    drain_seconds: float
    missing_tolerance: float
    enrollments: int
    inprocess_enrollments: int
    profile: bool
    profile_enrollments: int
    wait_quiet: float
    only: str
    seed: int
    json_out: Path
    force: bool


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(
        description="Benchmark the workflow engine: event -> email latency while "
        "ingesting a background load, and enrollment steps/s with two workers. "
        "Defaults are the full run; --small is the CI run.",
    )
    add = p.add_argument
    add("--small", action="store_true", help="the CI mode: well under 90 s")
    add(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/nudge_bench_engine",
        ),
        help="the benchmark's own database: DROPPED and recreated at the start",
    )
    add(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11"),
        help="the benchmark's own Redis db: FLUSHED at the start",
    )
    add("--workers", type=int, default=2, help="RQ SimpleWorker processes (2)")
    add("--web-workers", type=int, default=2, help="granian worker processes (2)")
    add(
        "--blocking-threads",
        type=int,
        default=12,
        help="granian threads running the WSGI app, per worker (12)",
    )
    add("--port", type=int, default=0, help="server port (default: a free one)")
    add("--probe-rate", type=float, default=5.0, help="probe track calls per s (5)")
    add("--probe-seconds", type=float, help="probing time (full 60, small 10)")
    add("--load-rate", type=float, help="background events/s (full 200, small 50)")
    add(
        "--load-batch",
        type=int,
        default=10,
        help="background events per request: N > 1 posts /api/v1/batch (one "
        "visitor's batch, as nudge.js sends them), 1 posts single /api/v1/page "
        "calls (10)",
    )
    add(
        "--load-contacts",
        type=int,
        help="contacts the background load is spread over (full 20000, small 2000)",
    )
    add("--load-threads", type=int, default=32, help="background sender threads (32)")
    add(
        "--lead-seconds",
        type=float,
        default=2.0,
        help="the background load runs this long before the probes start (2)",
    )
    add(
        "--baseline-queue",
        default="events",
        choices=QUEUES,
        help="queue of the baseline's no-op jobs: events, the probes' first hop, "
        "behind the load's jobs (events)",
    )
    add(
        "--drain-seconds",
        type=float,
        help="after the probes, wait this long at most for the last emails "
        "(full 60, small 20)",
    )
    add(
        "--missing-tolerance",
        type=float,
        default=1.0,
        help="percent of probes whose email may be missing before the run is "
        "called broken (1)",
    )
    add("--enrollments", type=int, help="enrollments for (b) (full 5000, small 500)")
    add(
        "--inprocess-enrollments",
        type=int,
        help="enrollments advanced in this process, without RQ, to count queries "
        "and time one process (full 400, small 100)",
    )
    add(
        "--profile",
        action="store_true",
        help="also cProfile advance_enrollments in this process on new enrollments "
        "(bench/out/engine-profile.txt)",
    )
    add("--profile-enrollments", type=int, default=1000, help="for --profile (1000)")
    add(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="before each phase, wait up to this many seconds for other processes "
        "to use less than 0.2 cores (0: just report how busy the machine is)",
    )
    add(
        "--only",
        choices=("all", "latency", "engine"),
        default="all",
        help="run only (a) latency or (b) engine (all)",
    )
    add("--seed", type=int, default=42)
    add("--json-out", type=Path, default=OUT_DIR / "engine.json")
    add(
        "--force",
        action="store_true",
        help="allow a database name without 'bench' in it, or Redis db 0",
    )
    a = p.parse_args(argv)
    small = a.small
    return Config(
        small=small,
        database_url=a.database_url,
        redis_url=a.redis_url,
        rq_workers=a.workers,
        web_workers=a.web_workers,
        blocking_threads=a.blocking_threads,
        port=a.port,
        probe_rate=a.probe_rate,
        probe_seconds=a.probe_seconds or (10.0 if small else 60.0),
        load_rate=a.load_rate
        if a.load_rate is not None
        else (50.0 if small else float(TARGETS["load_events_per_s"])),
        load_batch=max(1, a.load_batch),
        load_contacts=a.load_contacts or (2_000 if small else 20_000),
        load_threads=a.load_threads,
        lead_seconds=a.lead_seconds,
        baseline_queue=a.baseline_queue,
        drain_seconds=a.drain_seconds or (20.0 if small else 60.0),
        missing_tolerance=a.missing_tolerance,
        enrollments=a.enrollments or (500 if small else 5_000),
        inprocess_enrollments=a.inprocess_enrollments or (100 if small else 400),
        profile=a.profile,
        profile_enrollments=a.profile_enrollments,
        wait_quiet=a.wait_quiet,
        only=a.only,
        seed=a.seed,
        json_out=a.json_out,
        force=a.force,
    )


# -- set-up: database, redis, Django, data ---------------------------------------------


def _db_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


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


def app_env(cfg: Config, record_path: Path) -> dict[str, str]:
    """The environment of every app process (server, workers, scheduler)."""
    env = dict(os.environ)
    level = os.environ.get("BENCH_SERVER_LOG_LEVEL", "WARNING")
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=cfg.database_url,
        REDIS_URL=cfg.redis_url,
        DEBUG="0",
        LOG_LEVEL=level,
        RQ_LOG_LEVEL=level,
        EMAIL_BACKEND=BACKEND,
        BENCH_RECORD_PATH=str(record_path),
        # The limiter still runs; it just never says 429 at a benchmark's rates.
        NUDGE_RATE_LIMIT_PER_SECOND="1000000000",
        PYTHONUNBUFFERED="1",
        # ``bench._backend`` must be importable by the workers.
        PYTHONPATH=os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    )
    return env


def setup_django(cfg: Config, record_path: Path) -> None:
    """Django in this process, with the same settings as the app's processes."""
    os.environ.update(app_env(cfg, record_path))
    os.environ["LOG_LEVEL"] = os.environ.get("BENCH_LOG_LEVEL", "WARNING")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    import django
    from django.core.management import call_command

    django.setup()
    try:
        call_command("migrate", interactive=False, verbosity=0)
    except Exception as exc:
        raise SetupFailed(f"migrate failed: {exc}") from exc


@dataclass
class Data:
    key: str
    probe_workflow_id: int
    engine_workflow_id: int
    floor_workflow_id: int
    probes: int
    warmups: int


def probe_email(i: int) -> str:
    return f"probe-{i}@bench.example"


def warm_email(i: int) -> str:
    return f"warm-{i}@bench.example"


def create_data(cfg: Config, probes: int, warmups: int) -> Data:
    from apps.campaigns.models import EmailTemplate
    from apps.contacts.models import Contact
    from apps.events.models import Source
    from apps.events.services import source_create
    from apps.workflows.services import workflow_activate, workflow_create

    _source, key = source_create(name="bench-engine", kind=Source.Kind.SERVER)
    EmailTemplate.objects.create(
        name="Bench", subject="Hi {{ contact.first_name }}", html_body="<p>Hi</p>"
    )
    ids = {}
    for name, definition in (
        ("bench probe", PROBE_WORKFLOW),
        ("bench engine", ENGINE_WORKFLOW),
        ("bench engine floor", ENGINE_WORKFLOW),
    ):
        workflow = workflow_create(name=name, definition=definition)
        workflow_activate(workflow=workflow)
        ids[name] = workflow.pk

    rng = random.Random(cfg.seed)
    plans = ("free", "pro", "enterprise")
    contacts = []

    def person(kind: str, i: int, email: str) -> Contact:
        return Contact(
            email=email,
            external_id=f"{kind}-{i}",
            first_name=f"{kind.title()}{i}",
            attributes={"plan": rng.choice(plans)},
        )

    contacts += [person("probe", i, probe_email(i)) for i in range(probes)]
    contacts += [person("warm", i, warm_email(i)) for i in range(warmups)]
    contacts += [
        person("load", i, f"load-{i}@bench.example") for i in range(cfg.load_contacts)
    ]
    engine_contacts = max(
        cfg.enrollments, cfg.inprocess_enrollments, cfg.profile_enrollments
    )
    contacts += [
        person("engine", i, f"engine-{i}@bench.example") for i in range(engine_contacts)
    ]
    Contact.objects.bulk_create(contacts, batch_size=2_000)
    return Data(
        key=key,
        probe_workflow_id=ids["bench probe"],
        engine_workflow_id=ids["bench engine"],
        floor_workflow_id=ids["bench engine floor"],
        probes=probes,
        warmups=warmups,
    )


# -- the processes ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A child process in its own process group (stopped as one), logging to a file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.log_path = OUT_DIR / f"engine-{name}.log"
        self.proc: subprocess.Popen | None = None
        self._log: Any = None
        self.rq_name = ""

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pids(self) -> list[int]:
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


def server_proc(cfg: Config, env: dict[str, str], port: int) -> Proc:
    command = [
        PYTHON, "-m", "granian",
        "--interface", "wsgi",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", str(cfg.web_workers),
        "--blocking-threads", str(cfg.blocking_threads),
        "--backpressure", str(max(1, 1024 // cfg.web_workers)),
        "--http", "1",
        "--no-ws",
        "--log-level", "warning",
        "config.wsgi:application",
    ]  # fmt: skip
    return Proc("server", command, env)


def worker_procs(cfg: Config, env: dict[str, str]) -> list[Proc]:
    run = uuid.uuid4().hex[:6]
    procs = []
    for i in range(cfg.rq_workers):
        command = [
            PYTHON, "manage.py", "rqworker", *QUEUES,
            "--worker-class", "rq.worker.SimpleWorker",
            "--name", f"bench-engine-{run}-{i}",
        ]  # fmt: skip
        proc = Proc(f"worker-{i}", command, env)
        proc.rq_name = f"bench-engine-{run}-{i}"
        procs.append(proc)
    return procs


def worker_stats(rds: redis.Redis, names: list[str]) -> dict[str, tuple[int, float]]:
    """RQ's own counters per worker: (jobs finished, seconds spent in jobs)."""
    out = {}
    for name in names:
        jobs, busy = rds.hmget(
            f"rq:worker:{name}", ["successful_job_count", "total_working_time"]
        )
        out[name] = (int(jobs or 0), float(busy or 0.0))
    return out


def _wait_for_finished_jobs(rds: redis.Redis, timeout: float = 10.0) -> None:
    """Until no job is queued or running: RQ writes a job's counters and takes it off
    the started registry together, after the job returns."""
    from rq import Queue
    from rq.registry import StartedJobRegistry

    queues = [Queue(name, connection=rds) for name in QUEUES]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(q.count or StartedJobRegistry(queue=q).count for q in queues):
            return
        time.sleep(0.01)


def stats_delta(
    a: dict[str, tuple[int, float]], b: dict[str, tuple[int, float]], wall: float
) -> dict[str, Any]:
    jobs = sum(b[n][0] - a[n][0] for n in b)
    busy = [b[n][1] - a[n][1] for n in b]
    return {
        "jobs": jobs,
        "busy_s": round(sum(busy), 2),
        "busy_pct_each": [round(100 * x / wall, 1) for x in busy],
    }


def scheduler_proc(env: dict[str, str]) -> Proc:
    return Proc("scheduler", [PYTHON, "manage.py", "nudge_scheduler"], env)


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def wait_server(server: Proc, port: int, workers: int, timeout: float = 60.0) -> None:
    """Until every granian worker has loaded Django: a bad key gets its 401."""
    deadline = time.monotonic() + timeout
    body = orjson.dumps({"event": "x", "anonymousId": "a"})
    headers = {
        "Content-Type": "application/json",
        "Authorization": basic("sk_not-a-real-key"),
    }
    ok = 0
    while time.monotonic() < deadline:
        if not server.alive():
            raise SetupFailed(f"the server exited:\n{server.tail()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/api/v1/track", body, headers)
            status = conn.getresponse().status
            conn.close()
            if status != 401:
                raise SetupFailed(f"readiness probe got HTTP {status}, wanted 401")
            ok += 1
            if ok >= 4 * workers:
                return
        except OSError:
            time.sleep(0.1)
    raise SetupFailed(f"the server did not answer within {timeout:.0f} s")


def wait_workers(procs: list[Proc], rds: redis.Redis, timeout: float = 60.0) -> None:
    from rq import Worker

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if not p.alive():
                raise SetupFailed(f"RQ worker {p.name} exited:\n{p.tail()}")
        if Worker.count(connection=rds) >= len(procs):
            return
        time.sleep(0.1)
    raise SetupFailed(f"the RQ workers did not register within {timeout:.0f} s")


def wait_scheduler(proc: Proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise SetupFailed(f"the scheduler exited:\n{proc.tail()}")
        if "ticking" in proc.tail(5):
            return
        time.sleep(0.1)
    raise SetupFailed(f"the scheduler did not start within {timeout:.0f} s")


# -- CPU accounting --------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int, float] | None:
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
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total


PG_AUX = (
    "checkpointer",
    "background writer",
    "walwriter",
    "autovacuum launcher",
    "logical replication launcher",
    "archiver",
)


def _pg_title(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


class CpuWatch:
    """Who used the CPU during a phase, in cores (1.0 = one core busy): the groups
    given (granian, the RQ workers, ...), PostgreSQL for this database (its backends
    and the server's own processes), Redis, and everything else ("other": someone
    else's work, including PostgreSQL backends of other databases; should be ~0)."""

    def __init__(self, groups: dict[str, Any], database: str) -> None:
        self.groups = groups  # name -> callable returning pids
        self.database = database
        self._titles: dict[int, str] = {}

    def _postgres_is_ours(self, pid: int) -> bool:
        if pid not in self._titles:
            self._titles[pid] = _pg_title(pid)
        title = self._titles[pid]
        rest = title.split(": ", 2)[-1] if ": " in title else ""
        return (
            f" {self.database} " in f" {title} "
            or rest.startswith(PG_AUX)
            or ": " not in title  # the postmaster
        )

    def __enter__(self) -> CpuWatch:
        self.at = time.perf_counter()
        self.before = _all_procs()
        for pid, (comm, _ppid, _cpu) in self.before.items():
            if comm == "postgres":
                self._postgres_is_ours(pid)
        self.busy, self.total = _machine_jiffies()
        return self

    def __exit__(self, *exc: object) -> None:
        pids = {name: set(get()) for name, get in self.groups.items()}
        after = _all_procs()
        wall = max(time.perf_counter() - self.at, 1e-9)
        busy, total = _machine_jiffies()
        ncpu = os.cpu_count() or 1
        machine = (busy - self.busy) / max(total - self.total, 1) * ncpu
        used = {name: 0.0 for name in [*pids, "postgres", "redis"]}
        others: dict[str, float] = {}
        for pid, (comm, _ppid, cpu) in after.items():
            before = self.before.get(pid)
            cores = max(0.0, cpu - (before[2] if before else 0.0)) / wall
            group = next((g for g, s in pids.items() if pid in s), None)
            if group is None:
                if comm == "postgres":
                    if self._postgres_is_ours(pid):
                        group = "postgres"
                    else:
                        comm = "postgres (other databases)"
                elif comm.startswith("redis-server"):
                    group = "redis"
            if group is None:
                others[comm] = others.get(comm, 0.0) + cores
            else:
                used[group] += cores
        report: dict[str, Any] = {k: round(v, 2) for k, v in used.items()}
        # "other" from the machine's total: kernel time and exited processes count.
        report["other"] = round(max(0.0, machine - sum(used.values())), 2)
        report["machine"] = round(machine, 2)
        report["cores"] = ncpu
        report["wall_s"] = round(wall, 3)
        top = sorted(others.items(), key=lambda kv: -kv[1])[:3]
        report["other_top"] = {c: round(v, 2) for c, v in top if v >= 0.01}
        self.report = report


def wait_quiet(cfg: Config, groups: dict[str, Any], phase: str) -> dict[str, Any]:
    """How busy the machine is (with our processes idle) before a phase; with
    --wait-quiet, wait up to that many seconds for other processes to calm down."""
    deadline = time.monotonic() + cfg.wait_quiet
    while True:
        with CpuWatch(groups, _db_name(cfg.database_url)) as watch:
            time.sleep(1.0)
        other = watch.report["other"]
        if other < NOISY_CORES or time.monotonic() >= deadline:
            break
        log(f"  {phase}: waiting for a quiet machine, others use {other:.2f} cores")
        time.sleep(4.0)
    if other >= NOISY_CORES:
        top = ", ".join(f"{k} {v:.2f}" for k, v in watch.report["other_top"].items())
        log(f"  {phase}: the machine is busy, others use {other:.2f} cores ({top})")
    return watch.report


def fmt_cpu(c: dict[str, Any]) -> str:
    skip = {"machine", "cores", "other_top", "wall_s"}
    parts = ", ".join(f"{k} {v:.2f}" for k, v in c.items() if k not in skip)
    text = f"cpu (cores of {c['cores']}): {parts}; machine {c['machine']:.2f}"
    if c["other"] >= NOISY_CORES:
        top = ", ".join(f"{k} {v:.2f}" for k, v in c["other_top"].items())
        text += f"\n  NOT QUIET: other processes used {c['other']:.2f} cores ({top})"
    return text


# -- open-loop HTTP sending (also run in the load generator's process) -----------------


class Connection:
    """A keep-alive HTTP/1.1 connection, reopened if the server closed it."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.headers = headers
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        for attempt in (1, 2):
            try:
                self.conn.request("POST", path, body, self.headers)
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (
                http.client.RemoteDisconnected,
                ConnectionResetError,
                BrokenPipeError,
            ):
                self.conn.close()
                self.conn = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=60
                )
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


@dataclass
class Sent:
    intended: float  # wall-clock time the request was due to be sent
    latency: float  # seconds from ``intended`` to the full response
    status: int
    error: str = ""


def open_loop(
    port: int,
    headers: dict[str, str],
    requests: list[tuple[str, bytes]],
    rate: float,
    threads: int,
    start_at: float,
    stop: threading.Event | None = None,
    max_lag: float = 5.0,
) -> tuple[list[Sent], float]:
    """Send request i at wall time start_at + i / rate, whatever happened to the
    earlier ones; latency counts from that time (no coordinated omission). Stops if
    a send would start ``max_lag`` s late. Returns the results and the worst lag."""
    results: list[Sent | None] = [None] * len(requests)
    lock = threading.Lock()
    state = {"next": 0, "lag": 0.0}

    def claim() -> int | None:
        with lock:
            i = state["next"]
            if i >= len(requests) or (stop is not None and stop.is_set()):
                return None
            lag = time.time() - (start_at + i / rate)
            if lag > max_lag:
                return None
            state["lag"] = max(state["lag"], lag)
            state["next"] = i + 1
            return i

    def sender() -> None:
        conn = Connection(port, headers)
        try:
            while (i := claim()) is not None:
                due = start_at + i / rate
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
                path, body = requests[i]
                try:
                    status, raw = conn.post(path, body)
                    error = "" if status == 200 else raw[:200].decode(errors="replace")
                except OSError as exc:
                    status, error = 0, repr(exc)
                results[i] = Sent(due, time.time() - due, status, error)
        finally:
            conn.close()

    pool = [threading.Thread(target=sender, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        while t.is_alive():  # a timed join, so that Ctrl-C gets through
            t.join(0.5)
    sent = [r for r in results[: state["next"]] if r is not None]
    return sent, state["lag"]


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest rank."""
    if not sorted_values:
        return float("nan")
    k = max(0, math.ceil(p / 100 * len(sorted_values)) - 1)
    return sorted_values[k]


def dist_ms(seconds: list[float]) -> dict[str, float]:
    values = sorted(s * 1000 for s in seconds)
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 1),
        "p90": round(percentile(values, 90), 1),
        "p99": round(percentile(values, 99), 1),
        "max": round(values[-1], 1),
    }


def iso(t: float) -> str:
    return (
        dt.datetime.fromtimestamp(t, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


# -- the background load (its own process: spawn, no Django) ---------------------------

PAGES = ["/", "/collections/new", "/collections/sale", "/search", "/about", "/cart"]


def load_requests(
    rate: float, batch: int, seconds: float, contacts: int, seed: int, run: str
) -> list[tuple[str, bytes]]:
    """page events, ``batch`` per request (one visitor's), as many as ``seconds``
    at ``rate`` events/s need."""
    rng = random.Random(seed)
    count = max(1, math.ceil(rate * seconds / batch))
    now = time.time()
    out = []
    n = 0
    for _ in range(count):
        who = rng.randrange(contacts)
        events = []
        for k in range(batch):
            n += 1
            path = rng.choice(PAGES)
            events.append(
                {
                    "type": "page",
                    "name": path.strip("/").split("/")[0].title() or "Home",
                    "messageId": f"{run}-{n:09d}",
                    "userId": f"load-{who}",
                    "anonymousId": f"anon-load-{who}",
                    "timestamp": iso(now - 2 + k * 0.2),
                    "properties": {"path": path, "referrer": "https://www.google.com/"},
                    "context": {
                        "ip": f"203.0.{who % 256}.{who % 250 + 1}",
                        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) bench",
                        "locale": "en-US",
                        "page": {"path": path},
                    },
                }
            )
        if batch == 1:
            out.append(("/api/v1/page", orjson.dumps(events[0])))
        else:
            body = {"batch": events, "sentAt": iso(now)}
            out.append(("/api/v1/batch", orjson.dumps(body)))
    return out


def load_main(params: dict[str, Any], results: Any) -> None:
    """The load generator's process: page events at a fixed rate, open loop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    reqs = load_requests(
        params["rate"],
        params["batch"],
        params["seconds"],
        params["contacts"],
        params["seed"],
        params["run"],
    )
    headers = {"Content-Type": "application/json", "Authorization": params["auth"]}
    req_rate = params["rate"] / params["batch"]
    results.put({"ready": True})
    sent, lag = open_loop(
        params["port"],
        headers,
        reqs,
        req_rate,
        params["threads"],
        params["start_at"],
    )
    errors: dict[str, int] = {}
    for s in sent:
        if s.status != 200:
            label = f"HTTP {s.status} {' '.join(s.error.split())[:80]}"
            errors[label] = errors.get(label, 0) + 1
    ok = sum(1 for s in sent if s.status == 200)
    # Over the time the load should have taken, or longer if the answers came late.
    planned = len(reqs) / req_rate
    last = max((s.intended + s.latency for s in sent), default=params["start_at"])
    span = max(planned, last - params["start_at"])
    results.put(
        {
            "offered_events_per_s": params["rate"],
            "events_per_request": params["batch"],
            "requests": len(sent),
            "requests_planned": len(reqs),
            "events_sent": ok * params["batch"],
            "achieved_events_per_s": round(ok * params["batch"] / span, 1),
            "latency_ms": dist_ms([s.latency for s in sent]),
            "errors": errors,
            "worst_send_lag_ms": round(lag * 1000, 1),
            "fell_behind": len(sent) < len(reqs),
        }
    )


# -- records from the email backend and the no-op jobs ---------------------------------


@dataclass
class Records:
    mails: dict[str, list[float]]  # recipient -> hand-over times
    jobs: dict[str, float]  # token -> run time


def read_records(path: Path) -> Records:
    mails: dict[str, list[float]] = {}
    jobs: dict[str, float] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Records(mails, jobs)
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 5:
            continue
        kind, key, to, at, _pid = parts
        if kind == "mail":
            for addr in to.split(","):
                mails.setdefault(addr, []).append(float(at))
        elif kind == "job":
            jobs[key] = float(at)
    return Records(mails, jobs)


# -- RQ state --------------------------------------------------------------------------


def queue_state(rds: redis.Redis) -> dict[str, Any]:
    """Jobs waiting, running, failed and scheduled (retries) per queue."""
    from rq import Queue
    from rq.registry import (
        FailedJobRegistry,
        ScheduledJobRegistry,
        StartedJobRegistry,
    )

    state: dict[str, Any] = {}
    for name in QUEUES:
        q = Queue(name, connection=rds)
        state[name] = {
            "queued": q.count,
            "started": StartedJobRegistry(queue=q).count,
            "failed": FailedJobRegistry(queue=q).count,
            "scheduled": ScheduledJobRegistry(queue=q).count,
        }
    return state


def idle(state: dict[str, Any]) -> bool:
    return all(q["queued"] == 0 and q["started"] == 0 for q in state.values())


def failed_jobs(rds: redis.Redis, limit: int = 3) -> list[str]:
    from rq import Queue
    from rq.registry import FailedJobRegistry

    out = []
    for name in QUEUES:
        registry = FailedJobRegistry(queue=Queue(name, connection=rds))
        for job_id in registry.get_job_ids()[:limit]:
            job = Queue(name, connection=rds).fetch_job(job_id)
            lines = (job.exc_info or "").strip().splitlines() if job else []
            out.append(f"{name}: {job_id}: {(lines or [''])[-1][:300]}")
    return out


class QueueSampler:
    """The queues' lengths every ``every`` seconds, in a thread."""

    def __init__(self, rds: redis.Redis, every: float = 0.25) -> None:
        self.rds = rds
        self.every = every
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            pipe = self.rds.pipeline()
            for name in QUEUES:
                pipe.llen(f"rq:queue:{name}")
            lengths = pipe.execute()
            self.samples.append((time.time(), dict(zip(QUEUES, lengths, strict=True))))

    def __enter__(self) -> QueueSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for name in QUEUES:
            values = sorted(s[1][name] for s in self.samples)
            if values:
                out[name] = {
                    "mean": round(sum(values) / len(values), 1),
                    "p99": percentile(values, 99),
                    "max": values[-1],
                }
        return out


# -- (a) event -> email latency --------------------------------------------------------


def probe_requests(
    indexes: list[int], start_at: float, rate: float, email_of: Any, run: str
) -> list[tuple[str, bytes]]:
    out = []
    for n, i in enumerate(indexes):
        at = start_at + n / rate
        external = email_of(i).split("@")[0]
        body = {
            "type": "track",
            "event": PROBE_EVENT,
            "messageId": f"{run}-{i}",
            "userId": external,
            "anonymousId": f"anon-{external}",
            "timestamp": iso(at),
            "sentAt": iso(at),
            "properties": {"plan": "pro", "source": "bench"},
            "context": {"ip": "198.51.100.7", "locale": "en-US"},
        }
        out.append(("/api/v1/track", orjson.dumps(body)))
    return out


class Baseline:
    """No-op RQ jobs enqueued from this process at ``rate``, offset half a period
    from the probes; enqueue time recorded just before the enqueue call."""

    def __init__(self, rds: redis.Redis, queue: str) -> None:
        from rq import Queue

        self.queue = Queue(queue, connection=rds)
        self.enqueued: dict[str, float] = {}

    def run(self, prefix: str, count: int, rate: float, start_at: float) -> None:
        for i in range(count):
            due = start_at + (i + 0.5) / rate
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            token = f"{prefix}-{i}"
            self.enqueued[token] = time.time()
            self.queue.enqueue(NOOP_JOB, token, result_ttl=0, failure_ttl=3600)


def wait_for(
    record_path: Path,
    rds: redis.Redis,
    emails: list[str],
    tokens: list[str],
    timeout: float,
) -> tuple[Records, dict[str, Any], float]:
    """Until every email and job is recorded, or ``timeout``; returns the records,
    the queue state at the end and the seconds waited."""
    began = time.monotonic()
    while True:
        records = read_records(record_path)
        missing = sum(1 for e in emails if e not in records.mails) + sum(
            1 for t in tokens if t not in records.jobs
        )
        waited = time.monotonic() - began
        if missing == 0 or waited >= timeout:
            return records, queue_state(rds), waited
        time.sleep(0.1)


def hop_breakdown(data: Data, sent_at: dict[str, float], records: Records) -> dict:
    """Where each probe's time went, from the rows' timestamps (all clocks on this
    machine): HTTP response, received -> events job done, -> send step started,
    step, -> message claimed by the email job, -> handed to the backend."""
    from apps.campaigns.models import Message
    from apps.events.models import Event
    from apps.workflows.models import Enrollment, StepRun

    emails = list(sent_at)
    events = {
        e["pk"]: e
        for e in Event.objects.filter(
            name=PROBE_EVENT, contact__email__in=emails
        ).values("pk", "contact__email", "received_at", "processed_at")
    }
    enrollments = {
        row["pk"]: row
        for row in Enrollment.objects.filter(
            workflow_id=data.probe_workflow_id, trigger_event_id__in=list(events)
        ).values("pk", "trigger_event_id", "entered_at")
    }
    runs = {
        r["enrollment_id"]: r
        for r in StepRun.objects.filter(enrollment_id__in=list(enrollments)).values(
            "enrollment_id", "started_at", "finished_at"
        )
    }
    messages = {
        m["enrollment_id"]: m
        for m in Message.objects.filter(enrollment_id__in=list(enrollments)).values(
            "enrollment_id", "created_at", "claimed_at"
        )
    }
    hops: dict[str, list[float]] = {
        "send -> received by the app": [],
        "received -> events job done": [],
        "events job done -> send step starts": [],
        "send step (creates the message)": [],
        "step done -> email job claims it": [],
        "claimed -> handed to the backend": [],
    }
    names = list(hops)
    for enrollment_id, en in enrollments.items():
        ev = events[en["trigger_event_id"]]
        email = ev["contact__email"]
        run, msg = runs.get(enrollment_id), messages.get(enrollment_id)
        mail = records.mails.get(email)
        if not (run and msg and msg["claimed_at"] and mail and ev["processed_at"]):
            continue
        points = [
            sent_at[email],
            ev["received_at"].timestamp(),
            ev["processed_at"].timestamp(),
            run["started_at"].timestamp(),
            run["finished_at"].timestamp(),
            msg["claimed_at"].timestamp(),
            mail[0],
        ]
        for name, a, b in zip(names, points, points[1:], strict=False):
            hops[name].append(b - a)
    return {name: dist_ms(values) for name, values in hops.items()}


def phase_latency(
    cfg: Config,
    data: Data,
    port: int,
    rds: redis.Redis,
    record_path: Path,
    cpu_groups: dict[str, Any],
    load_pid: list[int],
    names: list[str],
) -> dict[str, Any]:
    auth = basic(data.key)
    headers = {"Content-Type": "application/json", "Authorization": auth}
    count = data.probes
    lead = cfg.lead_seconds if cfg.load_rate > 0 else 0.0
    load_seconds = lead + count / cfg.probe_rate

    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    start_at = time.time() + 3.0  # time for the load process to build its requests
    load = None
    if cfg.load_rate > 0:
        params = {
            "port": port,
            "auth": auth,
            "rate": cfg.load_rate,
            "batch": cfg.load_batch,
            "seconds": load_seconds,
            "contacts": cfg.load_contacts,
            "seed": cfg.seed,
            "run": f"load-{uuid.uuid4().hex[:6]}",
            "threads": cfg.load_threads,
            "start_at": start_at,
        }
        load = ctx.Process(target=load_main, args=(params, results), daemon=True)
        load.start()
        load_pid.append(load.pid)
        first = results.get(timeout=60)
        if not first.get("ready"):
            raise BenchBroken(f"the load generator did not start: {first}")
    probes_at = start_at + lead
    reqs = probe_requests(
        list(range(count)), probes_at, cfg.probe_rate, probe_email, "probe"
    )
    baseline = Baseline(rds, cfg.baseline_queue)
    log(
        f"(a) {count} probes at {cfg.probe_rate:g}/s for {count / cfg.probe_rate:g} s, "
        f"background {cfg.load_rate:g} events/s ({cfg.load_batch} per request) "
        f"starting {lead:g} s before; baseline no-op jobs on '{cfg.baseline_queue}'"
    )
    stats0 = worker_stats(rds, names)
    wall0 = time.time()
    try:
        with (
            QueueSampler(rds) as sampler,
            CpuWatch(cpu_groups, _db_name(cfg.database_url)) as cpu,
        ):
            bthread = threading.Thread(
                target=baseline.run,
                args=("base", count, cfg.probe_rate, probes_at),
                daemon=True,
            )
            bthread.start()
            sent, lag = open_loop(
                port, headers, reqs, cfg.probe_rate, threads=16, start_at=probes_at
            )
            while bthread.is_alive():
                bthread.join(0.5)
            load_report = results.get(timeout=120) if load is not None else None
        if load is not None:
            load.join(10)
    finally:
        if load is not None and load.is_alive():
            load.terminate()
            load.join(5)
    rq_jobs = stats_delta(stats0, worker_stats(rds, names), time.time() - wall0)
    log("  " + fmt_cpu(cpu.report))

    ok = [
        (probe_email(i), s) for i, s in enumerate(sent) if s.status == 200
    ]  # emails expected
    problems = []
    bad = [s for s in sent if s.status != 200]
    if bad:
        problems.append(
            f"probes: {len(bad)} of {len(sent)} track calls failed: "
            + "; ".join(sorted({f"HTTP {s.status} {s.error[:100]}" for s in bad})[:3])
        )
    if len(sent) < count:
        problems.append(f"probes: only {len(sent)} of {count} sent (fell behind)")

    log(f"  waiting for the last emails (up to {cfg.drain_seconds:g} s)")
    tokens = list(baseline.enqueued)
    records, state, waited = wait_for(
        record_path, rds, [e for e, _ in ok], tokens, cfg.drain_seconds
    )
    sent_at = {e: s.intended for e, s in ok}
    latencies, missing, twice = [], [], []
    for email, s in ok:
        times = records.mails.get(email)
        if not times:
            missing.append(email)
            continue
        if len(times) > 1:
            twice.append(email)
        latencies.append(min(times) - s.intended)
    base = [
        records.jobs[t] - at for t, at in baseline.enqueued.items() if t in records.jobs
    ]
    base_missing = len(tokens) - len(base)
    overloaded = bool(missing) and not idle(state)
    if twice:
        problems.append(f"{len(twice)} probes got their email more than once")
    tolerance = math.floor(len(ok) * cfg.missing_tolerance / 100)
    if missing and not overloaded and len(missing) > tolerance:
        problems.append(
            f"{len(missing)} of {len(ok)} probes got no email (queues idle after "
            f"{waited:.0f} s; tolerance {tolerance})"
        )
    if base_missing and idle(state):
        problems.append(f"baseline: {base_missing} no-op jobs never ran")
    report = {
        "probes_sent": len(sent),
        "probes_accepted": len(ok),
        "emails": len(ok) - len(missing),
        "missing": len(missing),
        "missing_examples": missing[:5],
        "sent_twice": len(twice),
        "overloaded": overloaded,
        "drain_waited_s": round(waited, 1),
        "latency_ms": dist_ms(latencies),
        "http_ms": dist_ms([s.latency for s in sent]),
        "probe_send_lag_ms": round(lag * 1000, 1),
        "baseline_queue": cfg.baseline_queue,
        "baseline_ms": dist_ms(base),
        "baseline_missing": base_missing,
        "hops_ms": hop_breakdown(data, sent_at, records),
        "queues_during": sampler.summary(),
        "queues_after": state,
        "rq": rq_jobs,
        "load": load_report,
        "cpu": cpu.report,
        "problems": problems,
    }
    return report


def warm_up(
    cfg: Config, data: Data, port: int, rds: redis.Redis, record_path: Path
) -> dict[str, Any]:
    """A few probes and no-op jobs through every process, so that imports, template
    compilation and connections are warm before anything is timed."""
    headers = {"Content-Type": "application/json", "Authorization": basic(data.key)}
    start_at = time.time() + 0.2
    reqs = probe_requests(list(range(data.warmups)), start_at, 20.0, warm_email, "warm")
    baseline = Baseline(rds, cfg.baseline_queue)
    baseline.run("warm", 10, 50.0, start_at)
    sent, _ = open_loop(port, headers, reqs, 20.0, threads=4, start_at=start_at)
    bad = [s for s in sent if s.status != 200]
    if bad:
        raise SetupFailed(
            f"warm-up: {len(bad)} track calls failed: HTTP {bad[0].status} "
            f"{bad[0].error}"
        )
    records, state, waited = wait_for(
        record_path,
        rds,
        [warm_email(i) for i in range(data.warmups)],
        list(baseline.enqueued),
        timeout=45.0,
    )
    got = sum(1 for i in range(data.warmups) if warm_email(i) in records.mails)
    if got < data.warmups or len(records.jobs) < len(baseline.enqueued):
        detail = failed_jobs(rds)
        raise BenchBroken(
            f"warm-up: {got} of {data.warmups} emails and {len(records.jobs)} of "
            f"{len(baseline.enqueued)} no-op jobs after {waited:.0f} s; queues "
            f"{state}; failed jobs: {detail or 'none'}"
        )
    return {"emails": got, "seconds": round(waited, 1)}


# -- (b) enrollment steps/s ------------------------------------------------------------


def enroll(workflow_id: int, count: int, offset: int = 0) -> tuple[list[int], float]:
    """``count`` enrollments of engine contacts, not advanced; committed at once
    (with last_advanced_at bumped), so the scheduler tick never sees them stale
    before they are enqueued. Returns the ids and the seconds it took."""
    from django.db import transaction
    from django.db.models.functions import Now

    from apps.contacts.models import Contact
    from apps.workflows.models import Enrollment, Workflow
    from apps.workflows.services import enrollment_start

    workflow = Workflow.objects.select_related("current_version").get(pk=workflow_id)
    contacts = list(
        Contact.objects.filter(external_id__startswith="engine-")
        .order_by("pk")
        .only("pk")[offset : offset + count]
    )
    if len(contacts) < count:
        raise BenchBroken(f"only {len(contacts)} engine contacts for {count}")
    began = time.perf_counter()
    ids = []
    with transaction.atomic():
        for contact in contacts:
            enrollment, reason = enrollment_start(
                workflow=workflow, contact=contact, advance=False
            )
            if enrollment is None:
                raise BenchBroken(f"enrollment_start refused: {reason}")
            ids.append(enrollment.pk)
        Enrollment.objects.filter(pk__in=ids).update(last_advanced_at=Now())
    return ids, time.perf_counter() - began


def enroll_bulk(workflow_id: int, count: int) -> list[int]:
    """Enrollments as enrollment_start makes them, in one INSERT (for the baseline,
    which does not measure enrolling)."""
    from django.utils import timezone

    from apps.contacts.models import Contact
    from apps.workflows.models import Enrollment, Workflow

    workflow = Workflow.objects.select_related("current_version").get(pk=workflow_id)
    version = workflow.current_version
    first = version.steps.order_by("position").first()
    now = timezone.now()
    contact_ids = (
        Contact.objects.filter(external_id__startswith="engine-")
        .order_by("pk")
        .values_list("pk", flat=True)[:count]
    )
    rows = Enrollment.objects.bulk_create(
        Enrollment(
            workflow=workflow,
            version=version,
            contact_id=contact_id,
            current_step=first,
            entered_at=now,
            last_advanced_at=now,
        )
        for contact_id in contact_ids
    )
    return [r.pk for r in rows]


def phase_engine(
    cfg: Config,
    data: Data,
    rds: redis.Redis,
    cpu_groups: dict[str, Any],
    quiet: dict[str, Any],
    names: list[str],
) -> dict[str, Any]:
    from django.db.models import Count, Max
    from django.db.models.functions import Now

    from apps.workflows.models import Enrollment, StepRun
    from apps.workflows.services import enqueue_advance

    problems: list[str] = []
    log(f"(b) creating {cfg.enrollments:,} enrollments (enrollment_start, no advance)")
    ids, create_s = enroll(data.engine_workflow_id, cfg.enrollments)
    log(f"  {len(ids) / create_s:,.0f} enrollment_start/s (one process)")
    quiet["engine"] = wait_quiet(cfg, cpu_groups, "(b)")
    state = queue_state(rds)
    if not idle(state):
        problems.append(f"(b) started with busy queues: {state}")
    running = Enrollment.objects.filter(
        workflow_id=data.engine_workflow_id, status__in=Enrollment.RUNNING
    )
    log(
        f"  enqueue_advance: {math.ceil(len(ids) / 200)} jobs of 200, "
        f"{cfg.rq_workers} workers"
    )
    # Fresh, so that the tick's "stale after 30 s" clock starts now, as it would for
    # enrollments an events job just made.
    Enrollment.objects.filter(pk__in=ids).update(last_advanced_at=Now())
    stuck_after = 20.0
    stats0 = worker_stats(rds, names)
    with CpuWatch(cpu_groups, _db_name(cfg.database_url)) as cpu:
        t0 = time.time()
        enqueue_advance(ids)
        enqueued_s = time.time() - t0
        left, last_change, last_left = len(ids), time.monotonic(), len(ids)
        while left:
            time.sleep(0.025)
            left = running.count()
            if left != last_left:
                last_change, last_left = time.monotonic(), left
            elif time.monotonic() - last_change > stuck_after:
                break
        seen_done = time.time()
    _wait_for_finished_jobs(rds)  # their counters are written after they return
    rq_jobs = stats_delta(stats0, worker_stats(rds, names), seen_done - t0)
    log("  " + fmt_cpu(cpu.report))
    if left:
        problems.append(
            f"(b) {left} of {len(ids)} enrollments still running after no progress "
            f"for {stuck_after:g} s; queues {queue_state(rds)}"
        )
    runs = StepRun.objects.filter(enrollment__workflow_id=data.engine_workflow_id)
    steps = runs.count()
    last = runs.aggregate(t=Max("finished_at"))["t"]
    elapsed = (last.timestamp() if last else seen_done) - t0
    statuses = dict(
        Enrollment.objects.filter(workflow_id=data.engine_workflow_id)
        .values_list("status")
        .annotate(n=Count("pk"))
    )
    if statuses.get("failed"):
        problems.append(f"(b) {statuses['failed']} enrollments failed")
    if not left and steps != STEPS_PER_ENROLLMENT * len(ids):
        problems.append(
            f"(b) {steps} step runs for {len(ids)} enrollments "
            f"({STEPS_PER_ENROLLMENT} each expected)"
        )
    report = {
        "enrollments": len(ids),
        "steps": steps,
        "seconds": round(elapsed, 3),
        "steps_per_s": round(steps / elapsed) if elapsed > 0 else None,
        "enrollments_per_s": round(len(ids) / elapsed) if elapsed > 0 else None,
        "enqueue_seconds": round(enqueued_s, 3),
        "seconds_until_seen_done": round(seen_done - t0, 3),
        "statuses": statuses,
        "enrollment_start_per_s": round(len(ids) / create_s),
        "jobs_expected": math.ceil(len(ids) / 200),
        "rq": rq_jobs,
        "worker_cpu_ms_per_enrollment": round(
            1000 * cpu.report["rq workers"] * cpu.report["wall_s"] / len(ids), 2
        ),
        "postgres_cpu_ms_per_enrollment": round(
            1000 * cpu.report["postgres"] * cpu.report["wall_s"] / len(ids), 2
        ),
        "cpu": cpu.report,
    }
    log(
        f"  {report['steps_per_s']:,} steps/s ({steps:,} steps, "
        f"{report['enrollments_per_s']:,} enrollments/s, {elapsed:.2f} s)"
    )
    report["problems"] = problems
    return report


# The baseline: the same rows, written with plain SQL, one transaction per enrollment.

FLOOR_LOCK = (
    "SELECT e.id, e.contact_id, c.attributes FROM workflows_enrollment e"
    " JOIN contacts_contact c ON c.id = e.contact_id"
    " WHERE e.id = %s AND e.status IN ('active', 'waiting')"
    " FOR UPDATE OF e SKIP LOCKED"
)
FLOOR_STEP = (
    "INSERT INTO workflows_steprun (enrollment_id, step_id, step_key, started_at,"
    " finished_at, outcome, detail) VALUES (%s, %s, %s, now(), clock_timestamp(),"
    " %s, %s)"
)
FLOOR_CONTACT = "UPDATE contacts_contact SET attributes = %s WHERE id = %s"
FLOOR_FINISH = (
    "UPDATE workflows_enrollment SET status = 'exited', finished_at = now(),"
    " exit_reason = 'bench', current_step_id = %s, last_advanced_at = now()"
    " WHERE id = %s"
)


def floor_main(
    url: str, chunks: list[list[int]], steps: list[tuple], out: Any, release: Any
) -> None:
    """One baseline process: per enrollment, lock it (with its contact), insert a
    step run per step, update the contact once and finish the enrollment; commit.
    Waits for ``release`` before it ends, so that its CPU (and its PostgreSQL
    backend's) is counted while both still exist."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from psycopg.types.json import Jsonb

    done = 0
    with psycopg.connect(url) as conn:
        for chunk in chunks:
            for enrollment_id in chunk:
                with conn.transaction():
                    row = conn.execute(FLOOR_LOCK, (enrollment_id,)).fetchone()
                    if row is None:
                        continue
                    attributes = {**(row[2] or {}), "bench_seen": True}
                    for step_id, key, kind, outcome in steps:
                        if kind == "update_contact":
                            conn.execute(FLOOR_CONTACT, (Jsonb(attributes), row[1]))
                        detail = {"reason": f"{kind} {outcome}", "step": key}
                        conn.execute(
                            FLOOR_STEP,
                            (enrollment_id, step_id, key, outcome, Jsonb(detail)),
                        )
                    conn.execute(FLOOR_FINISH, (steps[-1][0], enrollment_id))
                    done += 1
        out.put(done)
        release.wait(60)


def phase_floor(
    cfg: Config, data: Data, cpu_groups: dict[str, Any], floor_pids: list[int]
) -> dict[str, Any]:
    from django.db.models import Max, Min

    from apps.workflows.models import Enrollment, Step, StepRun, Workflow

    log(
        f"(b) baseline: {cfg.enrollments:,} enrollments, the same rows in plain SQL, "
        f"one transaction each, {cfg.rq_workers} processes"
    )
    ids = enroll_bulk(data.floor_workflow_id, cfg.enrollments)
    workflow = Workflow.objects.get(pk=data.floor_workflow_id)
    steps = [
        (s.pk, s.key, s.type, {"branch": "yes", "split": "A"}.get(s.type, "ok"))
        for s in Step.objects.filter(version_id=workflow.current_version_id).order_by(
            "position"
        )
    ]
    chunks = [ids[i : i + 200] for i in range(0, len(ids), 200)]
    n = max(1, cfg.rq_workers)
    ctx = multiprocessing.get_context("spawn")
    out, release = ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(
            target=floor_main,
            args=(cfg.database_url, chunks[k::n], steps, out, release),
            daemon=True,
        )
        for k in range(n)
    ]
    # Spawning takes a second: the time counts from the first step row written to
    # the last (the rows' own timestamps), not from the start of the processes.
    with CpuWatch(cpu_groups, _db_name(cfg.database_url)) as cpu:
        for p in procs:
            p.start()
            floor_pids.append(p.pid)
        done = sum(out.get(timeout=600) for _ in procs)
    release.set()
    for p in procs:
        p.join(10)
    runs = StepRun.objects.filter(enrollment__workflow_id=data.floor_workflow_id)
    span = runs.aggregate(a=Min("started_at"), b=Max("finished_at"))
    elapsed = (span["b"] - span["a"]).total_seconds() if span["a"] else float("nan")
    steps_done = runs.count()
    left = Enrollment.objects.filter(
        workflow_id=data.floor_workflow_id, status__in=Enrollment.RUNNING
    ).count()
    c = cpu.report
    report = {
        "enrollments": done,
        "steps": steps_done,
        "seconds": round(elapsed, 3),
        "steps_per_s": round(steps_done / elapsed) if elapsed > 0 else None,
        "left_running": left,
        # Per enrollment, from the phase's CPU (the clients' includes starting
        # Python: about 0.3 s per process).
        "client_cpu_ms_per_enrollment": round(
            1000 * c["sql floor"] * c["wall_s"] / max(done, 1), 2
        ),
        "postgres_cpu_ms_per_enrollment": round(
            1000 * c["postgres"] * c["wall_s"] / max(done, 1), 2
        ),
        "cpu": c,
    }
    log(f"  {report['steps_per_s']:,} steps/s ({steps_done:,} steps, {elapsed:.2f} s)")
    return report


def _backend_cpu(connection: Any) -> float:
    """CPU seconds of this connection's PostgreSQL backend so far."""
    connection.ensure_connection()
    stat = _proc_stat(connection.connection.info.backend_pid)
    return stat[2] if stat else float("nan")


def phase_inprocess(cfg: Config, data: Data) -> dict[str, Any]:
    """advance_enrollments in this process, no RQ: time, CPU (this process and its
    PostgreSQL backend) and queries per enrollment. CPU time hardly depends on what
    else the machine runs, so it shows what two workers could reach on two quiet
    cores: about 2 / (Python + PostgreSQL CPU per enrollment) enrollments/s."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.workflows.models import StepRun
    from apps.workflows.tasks import advance_enrollments

    n = cfg.inprocess_enrollments
    ids, _ = enroll(data.engine_workflow_id, n, offset=0)
    before = StepRun.objects.count()
    pg0, cpu0 = _backend_cpu(connection), time.process_time()
    began = time.perf_counter()
    for start in range(0, len(ids), 200):
        advance_enrollments(ids[start : start + 200])
    seconds = time.perf_counter() - began
    cpu, pg = time.process_time() - cpu0, _backend_cpu(connection) - pg0
    steps = StepRun.objects.count() - before

    # The queries, counted on a few more.
    few = min(n, 50)
    ids, _ = enroll(data.engine_workflow_id, few, offset=0)
    with CaptureQueriesContext(connection) as queries:
        advance_enrollments(ids)
    kinds: dict[str, int] = {}
    for q in queries.captured_queries:
        text = q["sql"].lstrip()
        verb = text.split(None, 1)[0].upper()
        table = ""
        for word in ("FROM", "INTO", "UPDATE"):
            marker = f"{word} "
            if marker in text:
                table = text.split(marker, 1)[1].split(None, 1)[0].strip('"')
                break
        kind = f"{verb} {table}".strip()
        kinds[kind] = kinds.get(kind, 0) + 1
    per = {
        k: round(v / few, 2) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])
    }
    cpu_ms, pg_ms = 1000 * cpu / n, 1000 * pg / n
    report = {
        "enrollments": n,
        "steps": steps,
        "seconds": round(seconds, 3),
        "steps_per_s": round(steps / seconds),
        "ms_per_enrollment": round(1000 * seconds / n, 2),
        "python_cpu_ms_per_enrollment": round(cpu_ms, 2),
        "postgres_cpu_ms_per_enrollment": round(pg_ms, 2),
        "steps_per_s_two_cores_cpu_bound": round(
            2 * 1000 / (cpu_ms + pg_ms) * steps / n
        )
        if cpu_ms + pg_ms > 0
        else None,
        "queries_per_enrollment": round(len(queries.captured_queries) / few, 1),
        "queries_per_enrollment_by_kind": per,
    }
    log(
        f"  in this process, no RQ: {report['steps_per_s']:,} steps/s; per "
        f"enrollment {report['ms_per_enrollment']} ms, CPU {cpu_ms:.2f} ms Python + "
        f"{pg_ms:.2f} ms PostgreSQL, {report['queries_per_enrollment']} queries"
    )
    return report


def _profile_text(prof: cProfile.Profile, title: str) -> str:
    out = io.StringIO()
    out.write(f"===== {title} =====\n")
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(50)
    return out.getvalue()


def phase_profile(cfg: Config, data: Data) -> dict[str, Any]:
    """cProfile, in this process: advance_enrollments on new enrollments of the
    engine workflow, and process_events on single bench_signup events (the probes'
    first job) and on batches of page events (the load's)."""
    from django.utils import timezone

    from apps.contacts.models import Contact
    from apps.events.models import Event, Source
    from apps.events.tasks import process_events
    from apps.workflows.tasks import advance_enrollments

    texts, report = [], {}
    n = cfg.profile_enrollments
    log(f"profile: advance_enrollments on {n} new enrollments, in this process")
    ids, _ = enroll(data.engine_workflow_id, n, offset=0)
    prof = cProfile.Profile()
    began = time.perf_counter()
    prof.enable()
    for start in range(0, len(ids), 200):
        advance_enrollments(ids[start : start + 200])
    prof.disable()
    seconds = time.perf_counter() - began
    texts.append(_profile_text(prof, f"advance_enrollments, {n} enrollments"))
    report["advance_ms_per_enrollment"] = round(1000 * seconds / n, 2)

    # Events stored as ingestion stores them, not enqueued: processed here. Received
    # "later", so that the scheduler tick does not hand them to the workers meanwhile
    # (it re-enqueues events left unprocessed NUDGE_REENQUEUE_AFTER_SECONDS).
    source = Source.objects.get(name="bench-engine")
    now = timezone.now() + dt.timedelta(minutes=10)
    contacts = list(
        Contact.objects.filter(external_id__startswith="load-")
        .order_by("pk")
        .values_list("pk", flat=True)[:200]
    )

    def store(name: str, per_call: int, tag: str) -> list[list[int]]:
        calls = []
        for k, contact_id in enumerate(contacts):
            rows = Event.objects.bulk_create(
                Event(
                    contact_id=contact_id,
                    source=source,
                    type="track" if name == PROBE_EVENT else "page",
                    name=name,
                    properties={"path": "/"},
                    context={"ip": "198.51.100.7"},
                    timestamp=now,
                    received_at=now,
                    message_id=f"prof-{tag}-{k}-{j}",
                )
                for j in range(per_call)
            )
            calls.append([r.pk for r in rows])
        return calls

    for title, name, per_call in (
        ("process_events, one bench_signup event per job", PROBE_EVENT, 1),
        ("process_events, 10 page events per job", "page", 10),
    ):
        calls = store(name, per_call, f"{name}{per_call}")
        prof = cProfile.Profile()
        began = time.perf_counter()
        prof.enable()
        for event_ids in calls:
            process_events(event_ids)
        prof.disable()
        seconds = time.perf_counter() - began
        texts.append(_profile_text(prof, f"{title}, {len(calls)} jobs"))
        report[f"process_events_ms_per_job_{name}x{per_call}"] = round(
            1000 * seconds / len(calls), 2
        )
    path = OUT_DIR / "engine-profile.txt"
    path.write_text("\n".join(texts))
    report["stats"] = str(path)
    log(
        "  ms per call in this process (profiled): "
        + ", ".join(f"{k} {v}" for k, v in report.items() if k != "stats")
    )
    return report


# -- the run ---------------------------------------------------------------------------


def run(cfg: Config) -> dict[str, Any]:
    started = time.perf_counter()
    report: dict[str, Any] = {
        "mode": "small" if cfg.small else "full",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "config": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(cfg).items()
            if k not in {"database_url", "redis_url"}
        },
        "warnings": [],
        "problems": [],
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    record_path = OUT_DIR / "engine-records.tsv"
    record_path.write_text("")

    log(
        f"database {_db_name(cfg.database_url)}: recreating; "
        f"Redis {cfg.redis_url}: flushing"
    )
    recreate_database(cfg)
    rds = flush_redis(cfg)
    log("migrating")
    setup_django(cfg, record_path)
    probes = max(1, round(cfg.probe_rate * cfg.probe_seconds))
    data = create_data(cfg, probes=probes, warmups=10)
    log(
        f"data: {probes} probe contacts, {cfg.load_contacts:,} load contacts, "
        f"workflows and template created"
    )

    env = app_env(cfg, record_path)
    port = cfg.port or free_port()
    server = server_proc(cfg, env, port)
    workers = worker_procs(cfg, env)
    scheduler = scheduler_proc(env)
    procs = [server, *workers, scheduler]
    load_pid: list[int] = []
    floor_pids: list[int] = []
    cpu_groups = {
        "granian": server.pids,
        "rq workers": lambda: [p for w in workers for p in w.pids()],
        "scheduler": scheduler.pids,
        "load gen": lambda: [p for p in load_pid if Path(f"/proc/{p}").exists()],
        "sql floor": lambda: [p for p in floor_pids if Path(f"/proc/{p}").exists()],
        "bench": lambda: [os.getpid()],
    }
    report["commands"] = {p.name: " ".join(p.command[1:]) for p in procs}
    log(
        f"starting granian ({cfg.web_workers} workers, port {port}), "
        f"{cfg.rq_workers} RQ SimpleWorkers, the scheduler"
    )
    try:
        for p in procs:
            p.start()
        wait_server(server, port, cfg.web_workers)
        wait_workers(workers, rds)
        wait_scheduler(scheduler)
        log("warming up")
        report["warm_up"] = warm_up(cfg, data, port, rds, record_path)

        quiet = report["quiet_before"] = {}
        names = [w.rq_name for w in workers]
        if cfg.only in ("all", "latency"):
            quiet["latency"] = wait_quiet(cfg, cpu_groups, "(a)")
            report["latency"] = phase_latency(
                cfg, data, port, rds, record_path, cpu_groups, load_pid, names
            )
            lat = report["latency"]
            report["problems"] += lat.pop("problems")
            log(
                f"  event -> email p50 {lat['latency_ms'].get('p50')} ms, p99 "
                f"{lat['latency_ms'].get('p99')} ms ({lat['emails']}/"
                f"{lat['probes_accepted']} emails); RQ no-op p50 "
                f"{lat['baseline_ms'].get('p50')} ms, "
                f"p99 {lat['baseline_ms'].get('p99')} ms"
            )
            if lat["load"] and lat["load"]["fell_behind"]:
                report["warnings"].append(
                    "the background load fell more than 5 s behind its schedule: "
                    "the server could not ingest it at that rate"
                )
            if lat["overloaded"]:
                report["warnings"].append(
                    f"the queues had not drained {lat['drain_waited_s']} s after "
                    f"the last probe: {lat['missing']} emails still pending, so "
                    "the p99 understates the latency"
                )
            if not idle(queue_state(rds)):
                log("  waiting for the queues to drain")
                deadline = time.monotonic() + 120
                while not idle(queue_state(rds)) and time.monotonic() < deadline:
                    time.sleep(0.2)

        if cfg.only in ("all", "engine"):
            report["engine"] = phase_engine(cfg, data, rds, cpu_groups, quiet, names)
            report["problems"] += report["engine"].pop("problems")
            quiet["floor"] = wait_quiet(cfg, cpu_groups, "(b) baseline")
            report["floor"] = phase_floor(cfg, data, cpu_groups, floor_pids)
            report["inprocess"] = phase_inprocess(cfg, data)
        if cfg.profile:
            report["profile"] = phase_profile(cfg, data)

        state = queue_state(rds)
        report["queues_end"] = state
        failed = sum(q["failed"] for q in state.values())
        if failed:
            report["problems"].append(
                f"RQ: {failed} jobs failed: " + " | ".join(failed_jobs(rds))
            )
        for p in procs:
            if not p.alive():
                report["problems"].append(f"{p.name} exited early:\n{p.tail(10)}")
    finally:
        log("stopping the server, workers and scheduler")
        for p in reversed(procs):
            p.stop()

    from apps.campaigns.models import Message

    report["messages_by_status"] = {
        s: Message.objects.filter(status=s).count()
        for s in ("queued", "sending", "sent", "failed", "suppressed", "uncertain")
    }
    for key in ("latency", "engine", "floor"):
        cpu = report.get(key, {}).get("cpu")
        if cpu and cpu["other"] >= NOISY_CORES:
            top = ", ".join(f"{k} {v:.2f}" for k, v in cpu["other_top"].items())
            report["warnings"].append(
                f"{key}: the machine was not quiet, other processes used "
                f"{cpu['other']:.2f} cores ({top})"
            )
    report["seconds_total"] = round(time.perf_counter() - started, 1)
    return report


# -- reporting -------------------------------------------------------------------------


def verdicts(report: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(figure, measured, target, baseline, PASS / MISS / n/a / "") rows."""
    cfg = report["config"]
    two = cfg["rq_workers"] == TARGETS["workers"]
    rows = []

    def status(ok: bool, applies: bool = True) -> str:
        return ("PASS" if ok else "MISS") if applies else "n/a"

    if "latency" in report:
        lat = report["latency"]
        load = lat["load"] or {}
        at_rate = (
            cfg["load_rate"] >= TARGETS["load_events_per_s"]
            and not load.get("fell_behind")
            and two
        )
        ms, base = lat["latency_ms"], lat["baseline_ms"]
        over = " (overloaded)" if lat["overloaded"] else ""
        p50, p99 = ms.get("p50", float("nan")), ms.get("p99", float("nan"))
        rate = f"{cfg['load_rate']:g} ev/s"
        rows += [
            (
                f"event -> email p50, {rate}",
                f"{p50} ms{over}",
                f"<= {TARGETS['p50_ms']:g} ms",
                f"RQ no-op {base.get('p50')} ms",
                status(p50 <= TARGETS["p50_ms"] and not lat["overloaded"], at_rate),
            ),
            (
                f"event -> email p99, {rate}",
                f"{p99} ms{over}",
                f"<= {TARGETS['p99_ms']:g} ms",
                f"RQ no-op {base.get('p99')} ms",
                status(p99 <= TARGETS["p99_ms"] and not lat["overloaded"], at_rate),
            ),
            (
                "  probes that got their email",
                f"{lat['emails']} / {lat['probes_accepted']}",
                "all",
                f"no-op jobs {base.get('n', 0)} / {lat['probes_sent']}",
                "",
            ),
            (
                "  background ingested (events/s)",
                f"{load.get('achieved_events_per_s', 0)}",
                f"{TARGETS['load_events_per_s']}",
                f"offered {cfg['load_rate']:g}, {cfg['load_batch']}/request",
                "",
            ),
        ]
    if "engine" in report:
        eng, floor, inproc = report["engine"], report["floor"], report["inprocess"]
        rows += [
            (
                f"engine steps/s, {cfg['rq_workers']} workers",
                f"{eng['steps_per_s']:,}",
                f">= {TARGETS['steps_per_s']:,}",
                f"plain SQL {floor['steps_per_s']:,}",
                status((eng["steps_per_s"] or 0) >= TARGETS["steps_per_s"], two),
            ),
            (
                "  enrollments/s",
                f"{eng['enrollments_per_s']:,}",
                "-",
                f"{eng['enrollments']:,} x {STEPS_PER_ENROLLMENT} steps",
                "",
            ),
            (
                "  one process, no RQ (steps/s)",
                f"{inproc['steps_per_s']:,}",
                "-",
                f"{inproc['queries_per_enrollment']} queries/enrollment",
                "",
            ),
            (
                "  CPU per enrollment: Python + PG",
                f"{inproc['python_cpu_ms_per_enrollment']} + "
                f"{inproc['postgres_cpu_ms_per_enrollment']} ms",
                "-",
                f"=> <= {inproc['steps_per_s_two_cores_cpu_bound']:,} "
                "steps/s on 2 cores",
                "",
            ),
        ]
    return rows


def print_table(report: dict[str, Any], cfg: Config) -> None:
    rows = verdicts(report)
    report["verdicts"] = {r[0].strip(): r[4] for r in rows if r[4]}
    head = ("figure", "measured", "target", "baseline", "")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]
    line = "  ".join("-" * w for w in widths)
    print()
    print(
        f"Engine benchmark, {report['mode']} mode: {cfg.rq_workers} RQ SimpleWorkers, "
        f"granian {cfg.web_workers} workers"
    )
    print(line)
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip())
    print(line)
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    print(line)
    if "latency" in report:
        lat = report["latency"]
        print("where a probe's time goes (p50 / p99 ms):")
        for name, d in lat["hops_ms"].items():
            if d.get("n"):
                print(f"  {name:<40} {d['p50']:>8} / {d['p99']}")
        q = lat["queues_during"]
        print(
            "queue length during (a), mean / max: "
            + ", ".join(f"{k} {v['mean']} / {v['max']}" for k, v in q.items())
        )
        rq = lat["rq"]
        print(
            f"(a) RQ: {rq['jobs']:,} jobs; workers busy "
            + " / ".join(f"{x}%" for x in rq["busy_pct_each"])
        )
        print(f"(a) {fmt_cpu(lat['cpu'])}")
    if "engine" in report:
        eng = report["engine"]
        rq = eng["rq"]
        print(
            f"(b) RQ: {rq['jobs']:,} jobs ({eng['jobs_expected']} enqueued by the "
            "benchmark); workers busy "
            + " / ".join(f"{x}%" for x in rq["busy_pct_each"])
        )
        print(f"(b) {fmt_cpu(eng['cpu'])}")
        floor = report["floor"]
        print(
            "(b) CPU per enrollment: RQ workers "
            f"{eng['worker_cpu_ms_per_enrollment']} ms + PostgreSQL "
            f"{eng['postgres_cpu_ms_per_enrollment']} ms; plain SQL "
            f"{floor['client_cpu_ms_per_enrollment']} + "
            f"{floor['postgres_cpu_ms_per_enrollment']} ms"
        )
    for warning in report["warnings"]:
        print(f"warning: {warning}")
    if report["mode"] == "small":
        print("small mode: short runs at a lower load, the figures are indicative only")
    print(f"total {report['seconds_total']} s; JSON in {cfg.json_out}")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        report = run(cfg)
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
