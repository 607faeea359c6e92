"""The time-trigger benchmark's options (bench/triggers.py --help)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from benchcommon.databases import add_output_args, new_parser
from benchcommon.paths import OUT_DIR

QUEUES = ("email", "workflows", "events", "default")
WORKFLOW_NAME = "bench schedule"
# Drafted with a cron that never fires; the enumeration phase sets this minute's.
WORKFLOW = {
    "trigger": {"type": "schedule", "cron": "0 0 29 2 *"},
    "reentry": {"rule": "every_time"},
    "steps": [{"key": "hold", "type": "wait", "config": {"duration": {"days": 1}}}],
}
TRACK_EVENT = "bench_viewed"


@dataclass
class Config:
    small: bool
    database_url: str
    redis_url: str
    contacts: int
    rq_workers: int
    web_workers: int
    blocking_threads: int
    track_rate: float
    track_users: int
    track_threads: int
    baseline_seconds: float
    max_seconds: float
    seed: int
    json_out: Path
    force: bool


def parse_args(argv: list[str] | None = None) -> Config:
    p, add = new_parser(
        "Benchmark time triggers: ingestion latency while a schedule enrolls many "
        "contacts, beside the same load with nothing else going on, and the time "
        "to enroll them all, each once. Defaults are the full run; --small is CI's.",
        "the CI mode: 5,000 contacts, about a minute",
        database_env="BENCH_TRIGGERS_DATABASE_URL",
        database="nudge_bench_triggers",
        redis_env="BENCH_TRIGGERS_REDIS_URL",
        redis_db=12,
    )
    add(
        "--contacts",
        type=int,
        help="contacts the schedule enrolls (200000; small 5000)",
    )
    add("--workers", type=int, default=2, help="RQ SimpleWorker processes (2)")
    add("--web-workers", type=int, default=2, help="granian worker processes (2)")
    add("--blocking-threads", type=int, default=12, help="granian threads each (12)")
    add("--track-rate", type=float, help="track calls per s offered (50)")
    add(
        "--track-users",
        type=int,
        default=2_000,
        help="the load's calls come from this many of the contacts (2000)",
    )
    add("--track-threads", type=int, default=16, help="load sender threads (16)")
    add(
        "--baseline-seconds",
        type=float,
        help="the load with nothing else going on (30; small 8)",
    )
    add(
        "--max-seconds",
        type=float,
        help="give up on the enumeration after this long (900; small 120)",
    )
    add("--seed", type=int, default=42)
    add_output_args(add, OUT_DIR / "triggers.json")
    a = p.parse_args(argv)
    return _config_from(a)


def _config_from(a: argparse.Namespace) -> Config:
    small = a.small
    return Config(
        small=small,
        database_url=a.database_url,
        redis_url=a.redis_url,
        contacts=a.contacts or (5_000 if small else 200_000),
        rq_workers=a.workers,
        web_workers=a.web_workers,
        blocking_threads=a.blocking_threads,
        track_rate=a.track_rate or 50.0,
        track_users=a.track_users,
        track_threads=a.track_threads,
        baseline_seconds=a.baseline_seconds or (8.0 if small else 30.0),
        max_seconds=a.max_seconds or (120.0 if small else 900.0),
        seed=a.seed,
        json_out=a.json_out,
        force=a.force,
    )
