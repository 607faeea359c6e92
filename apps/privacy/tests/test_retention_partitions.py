"""Retention on the partitioned events table (PostgreSQL): a whole old month that
is dropped, not deleted row by row, the few rows it keeps moved to the default
partition; a month that keeps more than a drop moves is walked row by row."""

import datetime as dt

import pytest
from django.db import connection

from apps.core import clock
from apps.events.models import Event, EventFailure, PendingEvent
from apps.events.partitions import (
    DEFAULT_PARTITION,
    monthly_partitions,
    partition_create,
    partition_name,
)
from apps.privacy.retention import kinds
from apps.privacy.retention.runs import retention_run

from .retention_data import NOW, a_contact, an_event, exists

pytestmark = pytest.mark.django_db

# Two months entirely past the 13-month window of NOW (2026-11-25).
OLDEST = dt.datetime(2025, 8, 1, tzinfo=dt.UTC)
NEXT = dt.datetime(2025, 9, 1, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def old_months(require_postgres):
    # (in the test's transaction: rolled back with it)
    for month in (OLDEST, NEXT):
        if partition_name(month) not in monthly_partitions():
            partition_create(month)
    with clock.frozen(NOW):
        yield


def committed() -> None:
    """The test's rows as a committed transaction leaves them: their deferred
    foreign-key checks done (a table with checks pending cannot be dropped)."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def test_an_old_month_with_nothing_kept_is_dropped_whole():
    # given: three events in the oldest month, one in the next
    contact = a_contact()
    oldest = [an_event(contact, OLDEST + dt.timedelta(days=d)) for d in (1, 2, 3)]
    later = an_event(contact, NEXT + dt.timedelta(days=1))

    committed()

    # when
    run = retention_run()

    # then: both months are gone with their rows, counted as deleted events
    assert partition_name(OLDEST) not in monthly_partitions()
    assert partition_name(NEXT) not in monthly_partitions()
    assert not any(exists(e) for e in [*oldest, later])
    assert run.deleted["events"] == 4


def test_a_month_that_holds_kept_events_is_dropped_and_they_move_to_the_default():
    # given: the oldest month holds a dead-lettered event and an unprocessed one
    # (both kept) and a plain one; the next month a plain one
    contact = a_contact()
    dead = an_event(contact, OLDEST + dt.timedelta(days=1))
    failure = EventFailure.objects.create(
        event_id=dead.pk, status="dead", first_failed_at=OLDEST, last_failed_at=OLDEST
    )
    unprocessed = an_event(contact, OLDEST + dt.timedelta(days=2), processed=False)
    plain = an_event(contact, OLDEST + dt.timedelta(days=3))
    later = an_event(contact, NEXT + dt.timedelta(days=1))

    committed()

    # when
    run = retention_run()

    # then: both months are dropped; the kept events live on in the default
    # partition, same ids and values, the unprocessed one still pending
    assert partition_name(OLDEST) not in monthly_partitions()
    assert partition_name(NEXT) not in monthly_partitions()
    assert not exists(plain) and not exists(later)
    assert run.deleted["events"] == 2
    for kept in (dead, unprocessed):
        row = Event.objects.get(pk=kept.pk)
        assert (row.name, row.properties, row.received_at) == (
            kept.name,
            kept.properties,
            kept.received_at,
        )
        assert partition_of(kept) == DEFAULT_PARTITION
    assert PendingEvent.objects.filter(event_id=unprocessed.pk).exists()

    # and when nothing keeps the dead-lettered one any more, the next run's walk
    # deletes it from the default partition
    failure.delete()
    run = retention_run()
    assert not exists(dead) and exists(unprocessed)
    assert run.deleted["events"] == 1


def test_a_month_that_keeps_too_many_is_walked_row_by_row_and_stays(monkeypatch):
    # given: more kept events in the oldest month than a drop moves
    monkeypatch.setattr(kinds, "MOVE_AT_MOST", 1)
    contact = a_contact()
    kept = [
        an_event(contact, OLDEST + dt.timedelta(days=d), processed=False)
        for d in (1, 2)
    ]
    plain = an_event(contact, OLDEST + dt.timedelta(days=3))
    later = an_event(contact, NEXT + dt.timedelta(days=1))

    committed()

    # when
    run = retention_run()

    # then: that month stays and is walked; the next one is dropped
    assert partition_name(OLDEST) in monthly_partitions()
    assert partition_name(NEXT) not in monthly_partitions()
    assert all(exists(e) for e in kept)
    assert not exists(plain) and not exists(later)
    assert run.deleted["events"] == 2


def partition_of(event) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableoid::regclass::text FROM events_event WHERE id = %s",
            [event.pk],
        )
        return cursor.fetchone()[0]
