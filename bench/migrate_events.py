#!/usr/bin/env python
"""How long migration 0010 (the partitioned events table) takes on a table with data.

What it does, in order (see bench/README.md):

1. Drops and recreates its own PostgreSQL database (``nudge_bench_migrate``), runs
   every migration in this process, then takes events back to 0005 (the table as
   it was before partitioning, with its global unique index and processed_at).
2. Loads N events (1,000,000; ``--small``: 20,000) with INSERT ... SELECT
   generate_series: 10,000 contacts, received over the last 180 days in time
   order, random messageIds (as clients send them), one in 100 unprocessed; then
   ANALYZE and CHECKPOINT, so the migration does not pay for the load.
3. Times ``migrate events 0010_partitioned_events`` (one transaction: the dedupe
   and queue tables filled, the partitioned table made, the rows copied, indexes
   and keys built after the copy, the old table dropped, ANALYZE).
4. Checks that every row, the unprocessed ones and the keys of the window are
   there, prints the figures and writes bench/out/migrate_events.json.

Exit status: 0 when the run completed, 1 if rows were lost, 2 if set-up failed,
130 on Ctrl-C.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchcommon.databases import (
    add_output_args,
    app_env,
    new_parser,
    recreate_database,
)
from benchcommon.errors import BenchBroken, bench_main
from benchcommon.paths import OUT_DIR, ROOT

BEFORE = "0007_source_double_opt_in"
AFTER = "0010_partitioned_events"
CONTACTS = 10_000
DAYS = 180


@dataclass(frozen=True)
class Config:
    events: int
    database_url: str
    redis_url: str
    json_out: Path
    force: bool


def parse_args(argv: list[str] | None) -> Config:
    parser, add = new_parser(
        __doc__.splitlines()[1],
        "20,000 events instead of 1,000,000 (CI)",
        database_env="BENCH_MIGRATE_DATABASE_URL",
        database="nudge_bench_migrate",
        redis_env="BENCH_MIGRATE_REDIS_URL",
        redis_db=9,
    )
    add("--events", type=int, default=None, help="how many events to load")
    add_output_args(add, OUT_DIR / "migrate_events.json")
    args = parser.parse_args(argv)
    events = args.events or (20_000 if args.small else 1_000_000)
    return Config(events, args.database_url, args.redis_url, args.json_out, args.force)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _django(cfg: Config) -> None:
    os.environ.update(app_env(cfg, "WARNING"))
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    import django

    django.setup()


def _migrate(*target: str) -> None:
    from django.core.management import call_command

    call_command("migrate", *target, interactive=False, verbosity=0)


_LOAD = """
INSERT INTO events_event
    (contact_id, source_id, type, name, properties, context, timestamp,
     received_at, message_id, processed_at)
SELECT c.first + (n %% %(contacts)s), %(source)s, 'track',
       (ARRAY['page', 'product_viewed', 'add_to_cart', 'order_completed'])[1 + n %% 4],
       jsonb_build_object('product_id', 'sku-' || (n %% 500), 'price', n %% 97),
       '{"library": {"name": "analytics.js"}}'::jsonb,
       r.at - interval '2 seconds', r.at, md5(n::text || random()::text),
       CASE WHEN n %% 100 = 0 THEN NULL ELSE r.at END
FROM generate_series(1, %(events)s) AS n,
     LATERAL (SELECT now() - make_interval(days => %(days)s)
                   + make_interval(days => %(days)s) / %(events)s * n AS at) AS r,
     (SELECT min(id) AS first FROM contacts_contact) AS c
"""


def _load(cfg: Config, source: int) -> dict[str, int]:
    from django.db import connection

    from apps.contacts.models import Contact

    Contact.objects.bulk_create(
        [Contact(external_id=f"user-{n}") for n in range(CONTACTS)], batch_size=2000
    )
    with connection.cursor() as cursor:
        cursor.execute(
            _LOAD,
            {
                "contacts": CONTACTS,
                "source": source,
                "events": cfg.events,
                "days": DAYS,
            },
        )
        cursor.execute("ANALYZE")
        cursor.execute("CHECKPOINT")
        cursor.execute(
            "SELECT count(*), count(*) FILTER (WHERE processed_at IS NULL), "
            "count(*) FILTER (WHERE received_at >= now() - interval '35 days'), "
            "max(id) FROM events_event"
        )
        rows, unprocessed, in_window, max_id = cursor.fetchone()
        cursor.execute("SELECT pg_total_relation_size('events_event')")
        size = cursor.fetchone()[0]
    return {
        "rows": rows,
        "unprocessed": unprocessed,
        "in_window": in_window,
        "max_id": max_id,
        "bytes": size,
    }


def _after() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM events_event), "
            "(SELECT count(*) FROM events_pendingevent), "
            "(SELECT count(*) FROM events_eventkey), "
            "(SELECT max(id) FROM events_event), "
            "(SELECT count(*) FROM pg_inherits "
            " WHERE inhparent = 'events_event'::regclass)"
        )
        rows, pending, keys, max_id, partitions = cursor.fetchone()
    return {
        "rows": rows,
        "pending": pending,
        "keys": keys,
        "max_id": max_id,
        "partitions": partitions,
    }


def run(cfg: Config) -> dict[str, Any]:
    log(f"database: recreating; migrating, then events back to {BEFORE}")
    recreate_database(cfg)
    _django(cfg)
    _migrate()
    from apps.events.services import internal_source

    # (made with today's model, before the events tables go back: the source's
    # later columns are gone at BEFORE)
    source = internal_source().pk
    _migrate("events", BEFORE)
    log(f"loading {cfg.events:,} events")
    started = time.perf_counter()
    before = _load(cfg, source)
    log(f"loaded in {time.perf_counter() - started:.1f} s")
    log(f"migrating events to {AFTER}")
    started = time.perf_counter()
    _migrate("events", AFTER)
    seconds = time.perf_counter() - started
    after = _after()
    problems = []
    if after["rows"] != before["rows"] or after["max_id"] != before["max_id"]:
        problems.append(f"rows {before['rows']} -> {after['rows']}")
    if after["pending"] != before["unprocessed"]:
        problems.append(f"pending {after['pending']} of {before['unprocessed']}")
    if abs(after["keys"] - before["in_window"]) > before["rows"] // 1000:
        # the window's edge moved by the seconds the migration took
        problems.append(f"keys {after['keys']} for {before['in_window']} in window")
    if problems:
        raise BenchBroken("; ".join(problems))
    return {
        "events": cfg.events,
        "seconds": round(seconds, 2),
        "rows_per_second": round(cfg.events / seconds),
        "before": before,
        "after": after,
    }


def print_table(report: dict[str, Any], cfg: Config) -> None:
    before, after = report["before"], report["after"]
    print()
    print(f"migration {AFTER} on {report['events']:,} events")
    print(f"  time                 {report['seconds']:.1f} s")
    print(f"  rows/s               {report['rows_per_second']:,}")
    print(f"  table before         {before['bytes'] / 2**20:,.0f} MB")
    print(f"  partitions           {after['partitions']} (months, ahead, default)")
    print(f"  pending (unproc.)    {after['pending']:,}")
    print(f"  keys (35-day window) {after['keys']:,}")


def main(argv: list[str] | None = None) -> int:
    return bench_main(parse_args(argv), run, print_table)


if __name__ == "__main__":
    sys.exit(main())
