"""--profile: the same requests through Django in this process, counted and
profiled."""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg
import redis
from benchcommon.cpu import proc_stat
from benchcommon.databases import db_name, flush_redis, recreate_database
from benchcommon.errors import BenchBroken
from benchcommon.report import log
from benchcommon.server import basic

from ingestbench.client import Request
from ingestbench.config import Config
from ingestbench.events import EventFactory, build_batches, build_tracks
from ingestbench.setup import create_sources, manage, server_env

# -- --profile: the same requests, in process ------------------------------------------


def profile(cfg: Config) -> None:
    """Where a request's CPU goes: the phase's requests through Django's WSGI handler
    in this process, without granian, counted and then profiled.

    The set-up is the benchmark's (database recreated, migrated, sources). The batch
    requests come from the same visitors as the batch phase; the track calls, like
    the track phase, meet a new visitor about one call in five.
    """
    key, warm, requests = _prepare(cfg)
    os.environ.update(server_env(cfg))
    sys.path.insert(0, str(cfg.app_dir))
    os.chdir(cfg.app_dir)
    import django

    django.setup()
    # What granian serves: the tracking calls' door in front of Django.
    from config.wsgi import application as app

    trips = _count_round_trips()
    call = _caller(app, basic(key))
    for req in warm:
        call(req)
    half = len(requests) // 2
    _timed(cfg, call, requests[:half], trips)
    _profiled(call, requests[half:])


def _prepare(cfg: Config) -> tuple[str, list[Request], list[Request]]:
    """The benchmark's set-up; the API key, the warm-up requests and the measured."""
    log(f"database {db_name(cfg.database_url)}: recreating; migrating")
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
    return key, requests[: len(requests) - n], requests[len(requests) - n :]


def _count_round_trips() -> dict[str, int]:
    """Counters of PostgreSQL and Redis round trips, from now on."""
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
    return trips


def _caller(app: Any, auth: str) -> Callable[[Request], None]:
    """One request through the WSGI app; anything but a 200 is broken."""

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

    return call


def _timed(
    cfg: Config,
    call: Callable[[Request], None],
    requests: list[Request],
    trips: dict[str, int],
) -> None:
    """CPU of this process and of its PostgreSQL backend, and round trips, a request."""
    from django.db import connection

    backend = connection.connection.info.backend_pid

    def postgres_cpu() -> float:
        return (proc_stat(backend) or ("", 0, 0.0))[2]

    half = len(requests)
    trips.update(postgres=0, redis=0)
    started, postgres_started = time.thread_time(), postgres_cpu()
    for req in requests:
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


def _profiled(call: Callable[[Request], None], requests: list[Request]) -> None:
    """cProfile's top 40 by cumulative CPU time."""
    import cProfile
    import pstats

    profiler = cProfile.Profile(time.thread_time)
    profiler.enable()
    for req in requests:
        call(req)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
    print(f"\ncProfile of {len(requests)} more requests (CPU time, with its overhead):")
    print(out.getvalue())
