"""Retention on the partitioned events table (PostgreSQL): a whole old month that
holds nothing kept is dropped, not deleted row by row; a month that holds something
kept is walked row by row instead."""

import datetime as dt

import pytest
from django.db import connection

from apps.core import clock
from apps.events.models import EventFailure
from apps.events.partitions import (
    monthly_partitions,
    partition_create,
    partition_name,
)
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


def test_a_month_that_holds_a_kept_event_is_walked_row_by_row_and_stays():
    # given: the oldest month holds a dead-lettered event (kept) and two others
    contact = a_contact()
    dead = an_event(contact, OLDEST + dt.timedelta(days=1))
    EventFailure.objects.create(
        event_id=dead.pk, status="dead", first_failed_at=OLDEST, last_failed_at=OLDEST
    )
    unprocessed = an_event(contact, OLDEST + dt.timedelta(days=2), processed=False)
    plain = an_event(contact, OLDEST + dt.timedelta(days=3))

    committed()

    # when
    run = retention_run()

    # then: the month stays (and the next is not dropped past it), only the plain
    # event went
    assert partition_name(OLDEST) in monthly_partitions()
    assert exists(dead) and exists(unprocessed)
    assert not exists(plain)
    assert run.deleted["events"] == 1
