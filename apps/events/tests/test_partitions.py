"""The events table by month on PostgreSQL: partitions made ahead by the tick, rows
that arrived before their month's partition moved into it, old months dropped
whole, and processing that never writes an event row.

Plain `db` tests: the partitions they make or drop go with their transaction."""

import datetime as dt
import uuid

import pytest
from django.db import connection

from apps.core import clock
from apps.core.scheduler import tick
from apps.events.ingestion import events_ingest
from apps.events.models import Event, PendingEvent
from apps.events.partitions import (
    DEFAULT_PARTITION,
    add_months,
    events_drop_partitions_before,
    monthly_partitions,
    partition_create,
    partition_name,
)
from apps.events.processing import events_process
from apps.events.schemas import Track

pytestmark = pytest.mark.usefixtures("require_postgres")


def _far_future() -> dt.datetime:
    """A month after every partition there is (the migration's, other tests')."""
    return add_months(max(monthly_partitions().values()), 24)


def _far_past() -> dt.datetime:
    return add_months(min(monthly_partitions().values()), -36)


def _ingest(source, count: int = 1) -> list[int]:
    messages = [
        Track(userId="u-1", event="viewed", messageId=str(uuid.uuid4()))
        for _ in range(count)
    ]
    return events_ingest(source=source, messages=messages).event_ids


def _partition_of(event_ids: list[int]) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT tableoid::regclass::text FROM events_event "
            "WHERE id = ANY(%s)",
            [event_ids],
        )
        return {name for (name,) in cursor.fetchall()}


def test_the_tick_makes_this_months_partition_and_the_next_two(server_source, run_jobs):
    # given a clock months past the last partition
    month = _far_future()
    with clock.frozen(month + dt.timedelta(days=12)):
        # when the tick runs, and the job it enqueued
        assert tick()["event-partitions"] == 3
        run_jobs()
        # then the month and the next two have their partitions, and the next tick
        # has nothing to do
        names = set(monthly_partitions())
        for ahead in range(3):
            assert partition_name(add_months(month, ahead)) in names
        assert tick()["event-partitions"] == 0
        # and an event of now goes into this month's
        assert _partition_of(_ingest(server_source)) == {partition_name(month)}


def test_events_that_arrived_before_their_partition_move_into_it(
    server_source, run_jobs
):
    # given events received in a month without a partition (in the default one),
    # and one received five months later
    month = _far_future()
    with clock.frozen(month + dt.timedelta(days=3)):
        early = _ingest(server_source, count=2)
    with clock.frozen(add_months(month, 5)):
        later = _ingest(server_source)
    assert _partition_of(early + later) == {DEFAULT_PARTITION}
    # when the tick makes that month's partition
    with clock.frozen(month + dt.timedelta(days=20)):
        tick()
        run_jobs()
    # then the month's events moved into it, with their ids, and were processed as
    # any event (the same tick handed them out); the later one waits in the
    # default partition
    assert _partition_of(early) == {partition_name(month)}
    assert _partition_of(later) == {DEFAULT_PARTITION}
    assert Event.objects.filter(pk__in=early).count() == 2
    assert not PendingEvent.objects.filter(event_id__in=early).exists()


def test_dropping_partitions_before_a_cutoff_removes_exactly_their_rows(
    server_source,
):
    # given three old months with their partitions, and events in each
    first = _far_past()
    months = [add_months(first, n) for n in range(3)]
    ids = {}
    for month in months:
        partition_create(month)
        with clock.frozen(month + dt.timedelta(days=10)):
            ids[month] = _ingest(server_source, count=2)
    others = Event.objects.exclude(
        pk__in=[pk for month_ids in ids.values() for pk in month_ids]
    ).count()
    with connection.cursor() as cursor:
        # the inserts' deferred foreign key checks now: a drop never shares a
        # transaction with inserts but in this test
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    # when the partitions entirely before the third month are dropped
    dropped = events_drop_partitions_before(months[2] + dt.timedelta(hours=1))
    # then the first two are gone with their rows and pending rows; the third month,
    # and everything else, is untouched
    assert dropped == [partition_name(months[0]), partition_name(months[1])]
    assert set(monthly_partitions()).isdisjoint(dropped)
    assert not Event.objects.filter(pk__in=ids[months[0]] + ids[months[1]]).exists()
    assert not PendingEvent.objects.filter(
        event_id__in=ids[months[0]] + ids[months[1]]
    ).exists()
    assert set(
        Event.objects.filter(pk__in=ids[months[2]]).values_list("pk", flat=True)
    ) == set(ids[months[2]])
    assert Event.objects.count() == others + 2
    # and a cutoff inside a month drops nothing of it
    assert events_drop_partitions_before(months[2] + dt.timedelta(days=20)) == []


def _row_changes(table_pattern: str) -> tuple[int, int, int]:
    """This transaction's inserts, updates and deletes on tables named so."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(n_tup_ins), 0), coalesce(sum(n_tup_upd), 0), "
            "coalesce(sum(n_tup_del), 0) FROM pg_stat_xact_user_tables "
            "WHERE relname LIKE %s",
            [table_pattern],
        )
        return tuple(cursor.fetchone())


def test_processing_deletes_pending_rows_and_never_writes_an_event_row(
    server_source,
):
    # given pending events
    event_ids = _ingest(server_source, count=5)
    events_before = _row_changes("events\\_event\\_%")
    pending_before = _row_changes("events\\_pendingevent")
    # when they are processed
    assert events_process(event_ids=event_ids) == 5
    # then no event row was inserted, updated or deleted; their pending rows were
    # deleted
    assert _row_changes("events\\_event\\_%") == events_before
    assert events_before[1] == 0
    ins, upd, deleted = _row_changes("events\\_pendingevent")
    assert (ins, upd, deleted - pending_before[2]) == (pending_before[0], 0, 5)
    assert not PendingEvent.objects.exists()
