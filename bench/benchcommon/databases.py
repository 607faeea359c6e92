"""The benchmarks' own PostgreSQL database and Redis db: options, guards, set-up.

Each benchmark drops and recreates its database and flushes its Redis db. The guards:
no database without "bench" in its name, and not Redis db 0, unless ``--force``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql

from benchcommon.errors import SetupFailed
from benchcommon.paths import ROOT


class Target(Protocol):
    """What the set-up needs from a benchmark's Config."""

    database_url: str
    redis_url: str
    force: bool


def add_database_args(
    add: Any, *, database_env: str, database: str, redis_env: str, redis_db: int
) -> None:
    """--database-url and --redis-url, with their environment variables."""
    add(
        "--database-url",
        default=os.environ.get(
            database_env, f"postgres://postgres@127.0.0.1:5432/{database}"
        ),
        help="the benchmark's own database: DROPPED and recreated at the start",
    )
    add(
        "--redis-url",
        default=os.environ.get(redis_env, f"redis://127.0.0.1:6379/{redis_db}"),
        help="the benchmark's own Redis db: FLUSHED at the start",
    )


def new_parser(
    description: str,
    small_help: str,
    *,
    database_env: str,
    database: str,
    redis_env: str,
    redis_db: int,
) -> tuple[argparse.ArgumentParser, Any]:
    """A benchmark's parser with --small, --database-url and --redis-url; and its
    add_argument, for the rest."""
    p = argparse.ArgumentParser(description=description)
    add = p.add_argument
    add("--small", action="store_true", help=small_help)
    add_database_args(
        add,
        database_env=database_env,
        database=database,
        redis_env=redis_env,
        redis_db=redis_db,
    )
    return p, add


def add_output_args(add: Any, json_out: Path) -> None:
    """--json-out and --force."""
    add("--json-out", type=Path, default=json_out)
    add(
        "--force",
        action="store_true",
        help="allow a database name without 'bench' in it, or Redis db 0",
    )


def db_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def droppable_name(cfg: Target) -> str:
    """The database's name, if the guard lets it be dropped."""
    name = db_name(cfg.database_url)
    if not name:
        raise SetupFailed("--database-url has no database name")
    if "bench" not in name and not cfg.force:
        raise SetupFailed(
            f"refusing to drop database {name!r}: its name has no 'bench' (use --force)"
        )
    return name


def drop_and_create(url: str, name: str) -> None:
    try:
        with psycopg.connect(with_db(url, "postgres"), autocommit=True) as c:
            ident = sql.Identifier(name)
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
            c.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    except psycopg.Error as exc:
        raise SetupFailed(f"could not recreate database {name!r}: {exc}") from exc


def lock_database(cfg: Target) -> psycopg.Connection:
    """One run at a time per database: two would drop each other's tables.

    A session advisory lock, held by the returned connection until it is closed.
    """
    name = db_name(cfg.database_url)
    try:
        conn = psycopg.connect(with_db(cfg.database_url, "postgres"), autocommit=True)
    except psycopg.Error as exc:
        raise SetupFailed(f"cannot reach PostgreSQL: {exc}") from exc
    got = conn.execute(
        "SELECT pg_try_advisory_lock(hashtext(%s))", (f"nudge-bench:{name}",)
    ).fetchone()[0]
    if not got:
        conn.close()
        raise SetupFailed(
            f"another benchmark run is using database {name!r}: wait for it, or "
            "give this one its own database and Redis db (--database-url and "
            "--redis-url, or the BENCH_* variables bench/README.md names)"
        )
    return conn


def recreate_database(cfg: Target) -> None:
    drop_and_create(cfg.database_url, droppable_name(cfg))


def flush_redis(cfg: Target) -> redis.Redis:
    client = redis.Redis.from_url(cfg.redis_url)
    db = client.connection_pool.connection_kwargs.get("db", 0)
    if int(db) == 0 and not cfg.force:
        raise SetupFailed("refusing to flush Redis db 0 (give another db or --force)")
    try:
        client.flushdb()
    except redis.RedisError as exc:
        raise SetupFailed(f"could not flush Redis at {cfg.redis_url}: {exc}") from exc
    return client


def app_env(cfg: Target, log_level: str) -> dict[str, str]:
    """The environment the app's settings read, for its processes (or this one)."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=cfg.database_url,
        REDIS_URL=cfg.redis_url,
        DEBUG="0",
        # with DEBUG off the app refuses its built-in development key (nudge.E001)
        SECRET_KEY=os.environ.get("SECRET_KEY") or "nudge-bench-key-not-a-secret",
        LOG_LEVEL=log_level,
        # The limiter still runs (a Redis round trip per request); it just never says
        # 429 at the rates a benchmark reaches.
        NUDGE_RATE_LIMIT_PER_SECOND="1000000000",
        NUDGE_RATE_LIMIT_PER_IP="1000000000/second",
        PYTHONUNBUFFERED="1",
    )
    return env


def django_migrate() -> None:
    """Django in this process (settings already in os.environ), then migrate."""
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
