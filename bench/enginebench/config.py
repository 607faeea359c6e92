"""The engine benchmark's targets, workflows and options (bench/engine.py --help)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchcommon.databases import add_output_args, new_parser
from benchcommon.paths import OUT_DIR

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
    p, add = new_parser(
        "Benchmark the workflow engine: event -> email latency while "
        "ingesting a background load, and enrollment steps/s with two workers. "
        "Defaults are the full run; --small is the CI run.",
        "the CI mode: well under 90 s",
        database_env="BENCH_DATABASE_URL",
        database="nudge_bench_engine",
        redis_env="BENCH_REDIS_URL",
        redis_db=11,
    )
    _add_server_args(add)
    _add_latency_args(add)
    _add_engine_args(add)
    _add_run_args(add)
    return _config_from(p.parse_args(argv))


def _add_server_args(add: Any) -> None:
    """The RQ workers and the granian server."""
    add("--workers", type=int, default=2, help="RQ SimpleWorker processes (2)")
    add("--web-workers", type=int, default=2, help="granian worker processes (2)")
    add(
        "--blocking-threads",
        type=int,
        default=12,
        help="granian threads running the WSGI app, per worker (12)",
    )
    add("--port", type=int, default=0, help="server port (default: a free one)")


def _add_latency_args(add: Any) -> None:
    """(a): the probes and the background load they run behind."""
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


def _add_engine_args(add: Any) -> None:
    """(b): enrollments through the workers, in this process and profiled."""
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


def _add_run_args(add: Any) -> None:
    """What to run, how quiet to wait for, and where the JSON goes."""
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
    add_output_args(add, OUT_DIR / "engine.json")


def _config_from(a: argparse.Namespace) -> Config:
    """The options with the defaults of the mode (full or --small) filled in."""
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
