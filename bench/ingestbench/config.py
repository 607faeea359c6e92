"""The ingestion benchmark's targets and options (bench/ingest.py --help)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchcommon.databases import add_output_args, new_parser
from benchcommon.paths import OUT_DIR, ROOT

TARGETS = {
    "batch_events_per_s": 20_000,
    "batch_pct_of_copy": 30.0,
    "single_rps": 1_500,
    "open_p99_ms": 50.0,
    "open_rate": 500,
}


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
    retention_rows: int
    retention_in_default: bool


def parse_args(argv: list[str] | None = None) -> Config:
    p, add = new_parser(
        "Benchmark the ingestion API (batch and single calls) against "
        "raw COPY, on a real granian server. Defaults are the full run; --small is "
        "the CI run.",
        "the CI mode: well under 60 s",
        database_env="BENCH_INGEST_DATABASE_URL",
        database="nudge_bench",
        redis_env="BENCH_INGEST_REDIS_URL",
        redis_db=13,
    )
    _add_server_args(add)
    _add_phase_args(add)
    add("--seed", type=int, default=42)
    add_output_args(add, OUT_DIR / "ingest.json")
    _add_profile_args(add)
    return _config_from(p.parse_args(argv))


def _add_server_args(add: Any) -> None:
    """The checkout to serve and granian's settings."""
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


def _add_phase_args(add: Any) -> None:
    """The sizes of the batch, single, open-loop and COPY phases."""
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
    add(
        "--retention-rows",
        type=int,
        default=0,
        help="write this many 500-day-old events first, then run the batch phase a "
        "second time while a retention pass deletes them (default 0: not done)",
    )
    add(
        "--retention-in-default",
        action="store_true",
        help="write those old events into the default partition rather than their "
        "months' (PostgreSQL): retention deletes them row by row instead of "
        "dropping the months",
    )


def _add_profile_args(add: Any) -> None:
    """--profile: the requests through Django in this process instead."""
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


def _config_from(a: argparse.Namespace) -> Config:
    """The options with the defaults of the mode (full or --small) filled in."""
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
        retention_rows=a.retention_rows,
        retention_in_default=a.retention_in_default,
    )
