"""The growth benchmark's sizes, fixed time, condition and targets
(bench/growth.py --help)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from benchcommon.databases import add_output_args, new_parser
from benchcommon.paths import OUT_DIR

# The fixed "now" of the run; events span the MONTHS before it.
NOW = dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.UTC)
MONTHS = 13
# The behavioural segment counted and updated at each size.
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
# Big-size figures must stay within this fraction of the base size's.
WITHIN = 0.10
DROP_TARGET_S = 1.0
# An ingestion call during the drop slower than this many times the p99 before it
# (and than STALL_FLOOR_S) is a stall.
STALL_FACTOR = 5
STALL_FLOOR_S = 0.1


@dataclass
class Config:
    small: bool
    database_url: str
    redis_url: str
    base_events: int
    big_events: int
    contacts: int
    ingest_seconds: float
    warmup_seconds: float
    ingest_threads: int
    picks: int
    json_out: Path
    force: bool


def parse_args(argv: list[str] | None = None) -> Config:
    p, add = new_parser(
        "Benchmark the events table as it grows: ingestion, one contact's segment "
        "update and a segment count at a base size and a big one, and dropping a "
        "month while ingesting. Defaults are the full run; --small is CI's.",
        "the CI mode: 100,000 then 1,000,000 events, a few minutes",
        database_env="BENCH_GROWTH_DATABASE_URL",
        database="nudge_bench_growth",
        redis_env="BENCH_GROWTH_REDIS_URL",
        redis_db=11,
    )
    add("--base-events", type=int, help="the first size (1000000; small 100000)")
    add("--big-events", type=int, help="the second size (50000000; small 1000000)")
    add("--contacts", type=int, help="contacts (200000; small 20000)")
    add("--ingest-seconds", type=float, help="each ingestion phase (20; small 5)")
    add(
        "--warmup-seconds",
        type=float,
        help="unmeasured ingestion before each size's measures (20; small 2)",
    )
    add("--threads", type=int, default=4, help="ingesting threads (4)")
    add("--picks", type=int, help="contacts updated one by one (1000; small 100)")
    add_output_args(add, OUT_DIR / "growth.json")
    a = p.parse_args(argv)
    small = a.small
    return Config(
        small=small,
        database_url=a.database_url,
        redis_url=a.redis_url,
        base_events=a.base_events or (100_000 if small else 1_000_000),
        big_events=a.big_events or (1_000_000 if small else 50_000_000),
        contacts=a.contacts or (20_000 if small else 200_000),
        ingest_seconds=a.ingest_seconds or (5.0 if small else 20.0),
        warmup_seconds=(2.0 if small else 20.0)
        if a.warmup_seconds is None
        else a.warmup_seconds,
        ingest_threads=a.threads,
        picks=a.picks or (100 if small else 1000),
        json_out=a.json_out,
        force=a.force,
    )
