"""The segment benchmark's condition, its hand-written SQL, the targets and the
options (bench/segments.py --help)."""

from __future__ import annotations

import argparse
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchcommon.cpu import NOISY_CORES
from benchcommon.databases import add_output_args, new_parser
from benchcommon.paths import OUT_DIR

# The fixed "now" of every measurement; events span the DAYS before it.
NOW = dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.UTC)
DAYS = 60

CONDITION = {
    "all": [
        {
            "event": "product_viewed",
            "count": {"op": "gte", "value": 3},
            "window": {"last": 7, "unit": "days"},
        },
        {
            "event": "order_completed",
            "count": {"op": "eq", "value": 0},
            "window": {"last": 24, "unit": "hours"},
        },
    ]
}

# The same question in plain SQL: the viewers (one grouped scan), less the buyers.
HAND_SQL = """
SELECT count(*) FROM (
    SELECT e.contact_id
    FROM events_event e
    WHERE e.name = 'product_viewed' AND e.timestamp >= %(week)s
    GROUP BY e.contact_id
    HAVING count(*) >= 3
) viewers
WHERE NOT EXISTS (
    SELECT FROM events_event o
    WHERE o.contact_id = viewers.contact_id
      AND o.name = 'order_completed' AND o.timestamp >= %(day)s
)
"""

TARGETS = {"count_s": 2.0, "incremental_ms": 5.0}
# The sizes the targets are stated for.
TARGET_CONTACTS, TARGET_EVENTS = 1_000_000, 10_000_000


# -- configuration ---------------------------------------------------------------------


@dataclass
class Config:
    small: bool
    database_url: str
    redis_url: str
    contacts: int
    events: int
    runs: int
    incremental: int
    generators: int
    seed: int
    wait_quiet: float
    reuse_data: bool
    explain_lines: int
    json_out: Path
    force: bool


def parse_args(argv: list[str] | None = None) -> Config:
    p, add = new_parser(
        "Benchmark behavioural segments: count_matching against "
        "hand-written SQL, segment_refresh_full and the incremental update per "
        "event. Defaults are the full run (1M contacts, 10M events); --small is the "
        "CI run.",
        "the CI mode: 20k contacts, 200k events",
        database_env="BENCH_DATABASE_URL",
        database="nudge_bench_segments",
        redis_env="BENCH_REDIS_URL",
        redis_db=10,
    )
    _add_size_args(add)
    _add_run_args(add)
    return _config_from(p.parse_args(argv))


def _add_size_args(add: Any) -> None:
    """How much data, how much of each measurement, how many processes encode."""
    add("--contacts", type=int, help="contacts (full 1,000,000, small 20,000)")
    add("--events", type=int, help="events (full 10,000,000, small 200,000)")
    add("--runs", type=int, default=5, help="timed runs of each count query (5)")
    add(
        "--incremental",
        type=int,
        default=200,
        help="incoming events for the incremental path, per contact pick (200)",
    )
    add(
        "--generators",
        type=int,
        default=2,
        help="processes encoding the rows that the COPY takes in (2)",
    )


def _add_run_args(add: Any) -> None:
    """The seed, the wait for a quiet machine, reuse of loaded data, and output."""
    add("--seed", type=int, default=42)
    add(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="before measuring, wait up to this many seconds for other processes to "
        f"use less than {NOISY_CORES} cores (0: do not wait, only report)",
    )
    add(
        "--reuse-data",
        action="store_true",
        help="keep the database of an earlier run of the same size (no reload): "
        "what earlier measurements added is deleted first",
    )
    add(
        "--explain-lines",
        type=int,
        help="plan lines to print (full 40, small 20; all go to the JSON)",
    )
    add_output_args(add, OUT_DIR / "segments.json")


def _config_from(a: argparse.Namespace) -> Config:
    """The options with the defaults of the mode (full or --small) filled in."""
    small = a.small
    return Config(
        small=small,
        database_url=a.database_url,
        redis_url=a.redis_url,
        contacts=a.contacts or (20_000 if small else TARGET_CONTACTS),
        events=a.events or (200_000 if small else TARGET_EVENTS),
        runs=max(1, a.runs),
        incremental=max(1, a.incremental),
        generators=max(1, a.generators),
        seed=a.seed,
        wait_quiet=max(0.0, a.wait_quiet),
        reuse_data=a.reuse_data,
        explain_lines=a.explain_lines or (20 if small else 40),
        json_out=a.json_out,
        force=a.force,
    )
