"""Set-up and the load: contacts, the month partitions, events by the million."""

from __future__ import annotations

import os
import time
from typing import Any

from benchcommon.databases import (
    app_env,
    django_migrate,
    flush_redis,
    recreate_database,
)
from benchcommon.report import log

from growthbench.config import MONTHS, NOW, Config

# Rows per INSERT ... SELECT: one statement (and commit) a second or so.
CHUNK = 1_000_000
SPAN_SECONDS = MONTHS * 30 * 86_400

# Event g (1, 2, ...) of the load: a contact spread by a multiplicative hash, a name
# by g % 20 (60% page, 25% product_viewed, 10% add_to_cart, 5% order_completed) and
# a time spread evenly over the MONTHS before NOW (received when it happened).
_EVENTS_SQL = """
INSERT INTO events_event
    (contact_id, source_id, type, name, properties, context, timestamp, received_at,
     message_id)
SELECT 1 + (g * 2654435761) %% %(contacts)s,
       %(source)s,
       CASE WHEN g %% 20 < 12 THEN 'page' ELSE 'track' END,
       CASE WHEN g %% 20 < 12 THEN 'page'
            WHEN g %% 20 < 17 THEN 'product_viewed'
            WHEN g %% 20 < 19 THEN 'add_to_cart'
            ELSE 'order_completed' END,
       CASE WHEN g %% 20 BETWEEN 12 AND 18
            THEN jsonb_build_object('product_id', 'P' || g %% 500, 'price', g %% 90)
            ELSE jsonb_build_object('path', '/p/' || g %% 1000) END,
       '{}'::jsonb,
       t, t, 'growth-' || g
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
     LATERAL (SELECT %(now)s::timestamptz
                     - make_interval(secs => (g * 7919) %% %(span)s) AS t) AS at
"""


def setup(cfg: Config) -> dict[str, Any]:
    """A fresh database with contacts, the source, the segment and the partitions."""
    recreate_database(cfg)
    flush_redis(cfg)
    os.environ.update(app_env(cfg, os.environ.get("BENCH_LOG_LEVEL", "WARNING")))
    django_migrate()
    from django.db import connection, transaction

    from apps.core import clock
    from apps.events.models import Source
    from apps.events.partitions import (
        add_months,
        month_of,
        monthly_partitions,
        partition_create,
        partition_name,
    )
    from apps.events.services import source_create
    from apps.segments.models import Segment
    from growthbench.config import CONDITION

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO contacts_contact (email, external_id, first_name, last_name,"
            " phone, timezone, locale, attributes, email_consent, score, created_at)"
            " SELECT 'c' || g || '@example.com', 'u' || g, '', '', '', '', '',"
            " '{}', 'subscribed', 0, %s FROM generate_series(1, %s) AS g",
            [NOW, cfg.contacts],
        )
    first = add_months(month_of(NOW), -MONTHS)
    months = []
    for i in range(MONTHS + 3):
        month = add_months(first, i)
        if partition_name(month) not in monthly_partitions():
            with transaction.atomic():
                months.append(partition_create(month))
    source, _key = source_create(name="growth", kind=Source.Kind.SERVER)
    with clock.frozen(NOW):
        segment = Segment.objects.create(
            name="growth: viewed 3x, no purchase", condition=CONDITION
        )
    return {
        "source_id": source.pk,
        "segment_id": segment.pk,
        "partitions": months,
        "setup_s": round(time.perf_counter() - started, 1),
    }


def load_events(cfg: Config, source_id: int, first: int, last: int) -> dict[str, Any]:
    """Events first..last (1-based), a million a statement, then VACUUM ANALYZE
    and a CHECKPOINT.

    The events table's primary key, indexes and foreign key are dropped for the
    load and made again after it (one sorted build each, as a restore does): at
    tens of millions of rows, an insert into each index for every row makes the load
    an hour. The measures then run on freshly built indexes, at both sizes alike."""
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        # A statement here takes as long as it takes (the app's limit is 120 s).
        cursor.execute("SET statement_timeout = 0")
        rebuild = _indexes_drop(cursor)
    for low in range(first, last + 1, CHUNK):
        high = min(low + CHUNK - 1, last)
        with connection.cursor() as cursor:
            cursor.execute(
                _EVENTS_SQL,
                {
                    "contacts": cfg.contacts,
                    "source": source_id,
                    "first": low,
                    "last": high,
                    "now": NOW,
                    "span": SPAN_SECONDS,
                },
            )
        done = high - first + 1
        rate = done / max(time.perf_counter() - started, 1e-9)
        log(f"  {high:,} events ({rate:,.0f}/s)")
    loaded_s = time.perf_counter() - started
    began = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '1GB'")
        for statement in rebuild:
            log(f"  {statement[:70]}...")
            cursor.execute(statement)
        cursor.execute("RESET maintenance_work_mem")
    indexed_s = time.perf_counter() - began
    began = time.perf_counter()
    with connection.cursor() as cursor:
        # Autovacuum is off where this runs: what it would have done by now (the
        # partitions' insert thresholds vacuum them as they fill: hint bits set,
        # the visibility map current for index-only scans).
        cursor.execute("VACUUM (ANALYZE) events_event")
        cursor.execute("ANALYZE contacts_contact")
    vacuum_s = time.perf_counter() - began
    began = time.perf_counter()
    with connection.cursor() as cursor:
        # The load's gigabytes written out now, not by the checkpointer while the
        # next phase is measured.
        cursor.execute("CHECKPOINT")
        cursor.execute("RESET statement_timeout")
    return {
        "events": last - first + 1,
        "load_s": round(loaded_s, 1),
        "rows_per_s": round((last - first + 1) / max(loaded_s, 1e-9)),
        "index_s": round(indexed_s, 1),
        "vacuum_analyze_s": round(vacuum_s, 1),
        "checkpoint_s": round(time.perf_counter() - began, 1),
    }


def _indexes_drop(cursor: Any) -> list[str]:
    """Drop the events table's primary key, foreign keys and indexes (on every
    partition); returns the statements that make them again, in order."""
    cursor.execute(
        "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'events_event'::regclass AND contype IN ('p', 'f')"
        " ORDER BY contype DESC"  # the primary key first
    )
    constraints = cursor.fetchall()
    cursor.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'events_event'"
        " AND indexname <> ALL(%s)",
        [[name for name, _kind, _definition in constraints]],
    )
    indexes = cursor.fetchall()
    for name, _kind, _definition in constraints:
        cursor.execute(f'ALTER TABLE events_event DROP CONSTRAINT "{name}"')
    for name, _definition in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    return [
        *(
            f'ALTER TABLE events_event ADD CONSTRAINT "{name}" {definition}'
            for name, _kind, definition in constraints
        ),
        # (a partitioned table's index reads "ON ONLY": made on the parent alone)
        *(d.replace(" ON ONLY ", " ON ", 1) for _name, d in indexes),
    ]


def table_size() -> dict[str, Any]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), pg_size_pretty(sum(pg_total_relation_size(i.inhrelid)))"
            " FROM pg_inherits i WHERE i.inhparent = 'events_event'::regclass"
        )
        partitions, size = cursor.fetchone()
    return {"partitions": partitions, "size": size}
