"""The events table by month (PostgreSQL): partitions made ahead of time, rows that
arrived before their month's partition moved into it, old months dropped whole.

``events_event`` is ``PARTITION BY RANGE (received_at)``, one partition a calendar
month (UTC), named ``events_event_pYYYY_MM``, plus ``events_event_default`` for any
row no month takes, so an insert never fails whatever the clock says. By
received_at, not timestamp: the server sets received_at as the row goes in, so new
rows always land in the newest partition (its pages and index pages the ones in
memory), and "older than" means the same for every row, so retention drops whole
months. A timestamp is the sender's: years back or ahead, it would scatter inserts
over every partition and the default.

The primary key is (id, received_at), as PostgreSQL requires of a partitioned
table's unique keys; ids still come from one identity sequence and nothing refers
to events by foreign key, so Django goes on using ``id`` alone.

On SQLite the table stays a plain table and these functions do nothing.
"""

import datetime as dt
import re

from django.db import connection, transaction
from psycopg import sql

from apps.core import jobs

from .models import PendingEvent

PARENT = "events_event"
DEFAULT_PARTITION = "events_event_default"
# This month's partition and the next ones': a month's partition exists two months
# before its first row, whichever tick or worker happens to be down meanwhile.
MONTHS_AHEAD = 2
_MONTHLY = re.compile(r"^events_event_p(\d{4})_(\d{2})$")

# Storage parameters of every partition, set when it is made (a partitioned parent
# takes none). A partition only ever receives inserts: processing no longer updates
# rows (PendingEvent), so the default triggers, which count dead rows against 20%
# of the table, would almost never vacuum it, and a fresh month would have no
# statistics until 10% of it was new. Insert-driven thresholds vacuum it as it
# fills (the visibility map kept current for index-only scans, rows frozen a little
# at a time rather than all at once at wraparound) and analyse it early and often
# while it is small and hot; fixed counts, because a month's partition starts empty.
PARTITION_STORAGE = (
    "autovacuum_vacuum_insert_threshold = 100000, "
    "autovacuum_vacuum_insert_scale_factor = 0.05, "
    "autovacuum_analyze_threshold = 10000, "
    "autovacuum_analyze_scale_factor = 0.02"
)
# DDL on the events table waits this long for its lock, then gives up (the next
# tick, or the caller, tries again): while an ACCESS EXCLUSIVE request waits behind
# a long reader, every insert and read that needs the same table queues behind it,
# so this bounds the stall it can cause. Partitions are made two months ahead, so a
# few tries that give up cost nothing.
LOCK_TIMEOUT = "500ms"


def is_partitioned() -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [PARENT]
        )
        row = cursor.fetchone()
    return row is not None and row[0] == "p"


def month_of(moment: dt.datetime) -> dt.datetime:
    """The first instant (UTC) of the month ``moment`` is in."""
    moment = moment.astimezone(dt.UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def add_months(month: dt.datetime, count: int) -> dt.datetime:
    index = month.year * 12 + month.month - 1 + count
    return month.replace(year=index // 12, month=index % 12 + 1)


def partition_name(month: dt.datetime) -> str:
    return f"{PARENT}_p{month:%Y_%m}"


def monthly_partitions() -> dict[str, dt.datetime]:
    """The monthly partitions there are, by name, with their month."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            [PARENT],
        )
        names = [name for (name,) in cursor.fetchall()]
    months = {}
    for name in names:
        if match := _MONTHLY.match(name):
            months[name] = dt.datetime(int(match[1]), int(match[2]), 1, tzinfo=dt.UTC)
    return months


def months_missing(*, now: dt.datetime) -> list[dt.datetime]:
    """This month and the next MONTHS_AHEAD that have no partition yet: one cheap
    catalog query (a tick runs it every few seconds)."""
    wanted = [add_months(month_of(now), n) for n in range(MONTHS_AHEAD + 1)]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM unnest(%s::text[]) AS name WHERE to_regclass(name) IS NULL",
            [[partition_name(month) for month in wanted]],
        )
        missing = {name for (name,) in cursor.fetchall()}
    return [month for month in wanted if partition_name(month) in missing]


def partition_create(month: dt.datetime) -> str:
    """Make the month's partition, with the rows of that month the default
    partition holds moved into it; returns its name. In the caller's transaction.

    The table is made apart and attached, so that the rows can go in first:
    ATTACH refuses a month whose rows are still in the default partition, and the
    default is locked first so that none arrive there meanwhile. Attaching builds
    the partition's indexes and checks its foreign key (only over the moved rows),
    and takes only a SHARE UPDATE EXCLUSIVE lock on the parent: inserts go on.
    """
    name = partition_name(month)
    lower, upper = month.isoformat(), add_months(month, 1).isoformat()
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS) "
            f"WITH ({PARTITION_STORAGE})"
        )
        cursor.execute("SELECT to_regclass(%s)", [DEFAULT_PARTITION])
        if cursor.fetchone()[0] is not None:
            cursor.execute(f"LOCK TABLE {DEFAULT_PARTITION} IN ACCESS EXCLUSIVE MODE")
            cursor.execute(
                f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} "  # noqa: S608
                "WHERE received_at >= %s AND received_at < %s RETURNING *) "
                f"INSERT INTO {name} SELECT * FROM moved",
                [lower, upper],
            )
        cursor.execute(
            f"ALTER TABLE {PARENT} ATTACH PARTITION {name} "
            f"FOR VALUES FROM ('{lower}') TO ('{upper}')"
        )
    return name


def events_partitions_ensure(*, now: dt.datetime) -> list[str]:
    """Make this month's partition and the next MONTHS_AHEAD months' where
    missing, each in a short transaction of its own; returns their names."""
    if not is_partitioned():
        return []
    created = []
    for month in months_missing(now=now):
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            if partition_name(month) not in _locked_names():
                created.append(partition_create(month))
    return created


def _locked_names() -> set[str]:
    """The monthly partitions, read once another maker has finished: two workers
    making the same month one after the other must not both try."""
    with connection.cursor() as cursor:
        # transaction-scoped, so released with the partition's transaction
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [PARENT])
    return set(monthly_partitions())


def events_partitions_due(*, now: dt.datetime) -> int:
    """Tick task: how many of the months ahead lack a partition; if any, a job
    makes them (outside the tick's transaction, which would hold the locks that
    making them takes until every other tick task had run)."""
    if not is_partitioned():
        return 0
    missing = months_missing(now=now)
    if missing:
        from .tasks import ensure_event_partitions

        jobs.enqueue(
            ensure_event_partitions,
            queue="default",
            job_id=f"events-partitions-{partition_name(missing[0])}",
        )
    return len(missing)


def events_drop_partitions_before(cutoff: dt.datetime) -> list[str]:
    """Drop every monthly partition whose month ends at or before ``cutoff``, with
    its rows and their pending rows; returns the names, oldest first. Rows in the
    default partition are never dropped here, whatever their time."""
    if not is_partitioned():
        return []
    dropped = []
    for name, month in sorted(monthly_partitions().items(), key=lambda kv: kv[1]):
        if add_months(month, 1) <= cutoff:
            events_partition_drop(name, month)
            dropped.append(name)
    return dropped


def events_partition_drop(name: str, month: dt.datetime, *, keep=()) -> int:
    """Drop the monthly partition ``name`` (of ``month``) with its rows and their
    pending rows, except the rows whose ids ``keep`` lists: those move to the
    default partition first, same ids and values, where the row-by-row retention
    walk finds them once nothing keeps them. Returns how many rows moved.

    DETACH, the move, DROP: one short transaction, a change of the catalog and the
    removal of its files, the same few milliseconds whatever the partition holds
    (the kept rows are read by primary key), no scan, nothing left for VACUUM. It
    holds an ACCESS EXCLUSIVE lock on the events table for that moment, after
    waiting at most LOCK_TIMEOUT for transactions reading it to finish (else
    ``OperationalError``, and nothing changed).
    """
    keep = sorted(set(keep))
    table = sql.Identifier(name)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            cursor.execute(
                sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
                    sql.Identifier(PARENT), table
                )
            )
            moved = 0
            if keep:
                # Into the parent, which now has no partition for the month: the
                # rows land in the default one (made by the migration).
                columns = sql.SQL(", ").join(map(sql.Identifier, _columns(cursor)))
                cursor.execute(
                    sql.SQL(
                        "INSERT INTO {} ({}) SELECT {} FROM {} WHERE id = ANY(%s)"
                    ).format(sql.Identifier(PARENT), columns, columns, table),
                    [keep],
                )
                moved = cursor.rowcount
            cursor.execute(sql.SQL("DROP TABLE {}").format(table))
        PendingEvent.objects.filter(
            received_at__gte=month, received_at__lt=add_months(month, 1)
        ).exclude(event_id__in=keep).delete()
    return moved


def _columns(cursor) -> list[str]:
    cursor.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass "
        "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        [PARENT],
    )
    return [name for (name,) in cursor.fetchall()]
