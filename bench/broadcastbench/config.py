"""The broadcast benchmark's options (bench/broadcast.py --help)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchcommon.databases import add_output_args, new_parser
from benchcommon.paths import OUT_DIR

QUEUES = ("email", "workflows", "events", "default")
# Peak RSS of each worker is read when this many messages have been handed over
# (or half the audience, if smaller) and again at the end: memory must stay flat.
RSS_MARK = 10_000


@dataclass
class Config:
    small: bool
    database_url: str
    redis_url: str
    recipients: int
    baseline_messages: int
    rq_workers: int
    max_seconds: float
    json_out: Path
    force: bool


def parse_args(argv: list[str] | None = None) -> Config:
    p, add = new_parser(
        "Benchmark broadcast sending: a campaign to a static segment, rendered and "
        "handed to a recording backend by the RQ workers, beside a bare loop that "
        "renders and builds the same messages. Defaults are the full run; --small "
        "is CI's.",
        "the CI mode: 5,000 recipients, under a minute",
        database_env="BENCH_BROADCAST_DATABASE_URL",
        database="nudge_bench_broadcast",
        redis_env="BENCH_BROADCAST_REDIS_URL",
        redis_db=9,
    )
    add("--recipients", type=int, help="the campaign's audience (100000; small 5000)")
    add(
        "--baseline-messages",
        type=int,
        help="messages the bare loop makes, split over the workers (20000; small 2000)",
    )
    add("--workers", type=int, default=2, help="RQ SimpleWorker processes (2)")
    add(
        "--max-seconds",
        type=float,
        help="give up on the send after this long (900; small 120)",
    )
    add_output_args(add, OUT_DIR / "broadcast.json")
    a = p.parse_args(argv)
    small = a.small
    recipients = a.recipients or (5_000 if small else 100_000)
    return Config(
        small=small,
        database_url=a.database_url,
        redis_url=a.redis_url,
        recipients=recipients,
        baseline_messages=min(
            recipients, a.baseline_messages or (2_000 if small else 20_000)
        ),
        rq_workers=a.workers,
        max_seconds=a.max_seconds or (120.0 if small else 900.0),
        json_out=a.json_out,
        force=a.force,
    )
