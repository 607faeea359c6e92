"""Migration 0010 on a database with events: every row and id survives, the
unprocessed ones are pending, the keys inside the window dedupe, and on PostgreSQL
the table comes out partitioned by month. As Django's own migration tests do: the
executor takes the database back to 0005, rows go in, and it goes forward again."""

import datetime as dt
import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from apps.contacts.models import Contact
from apps.core import clock
from apps.events.ingestion import events_ingest
from apps.events.models import Event, EventKey, PendingEvent
from apps.events.partitions import (
    DEFAULT_PARTITION,
    events_partitions_ensure,
    is_partitioned,
    partition_name,
)
from apps.events.schemas import Track

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("events", "0007_source_double_opt_in")
AFTER = ("events", "0010_partitioned_events")
NOW = dt.datetime(2031, 6, 15, 12, 0, tzinfo=dt.UTC)
ROWS = 3_000


def _migrate(target):
    executor = MigrationExecutor(connection)
    executor.migrate([target])
    return executor.loader.project_state(target).apps


@pytest.fixture
def at_0005(transactional_db):
    """The database at 0005 for the test, migrated to the latest again after (with
    the partitions of the real clock's months, as the tests that follow expect)."""
    old_apps = _migrate(BEFORE)
    yield old_apps
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes("events"))
    events_partitions_ensure(now=clock.now())


def _old_events(old_apps, *, source_id: int, contact_id: int) -> list:
    """ROWS events over four months before NOW: one in three unprocessed, the
    last of them from a source since deleted (NULL)."""
    OldEvent = old_apps.get_model("events", "Event")
    rows = []
    for n in range(ROWS):
        received = NOW - dt.timedelta(days=120) + dt.timedelta(minutes=57 * n)
        rows.append(
            OldEvent(
                contact_id=contact_id,
                source_id=source_id if n < ROWS - 1 else None,
                type="track",
                name=f"event-{n % 7}",
                properties={"n": n},
                context={},
                timestamp=received - dt.timedelta(seconds=5),
                received_at=received,
                message_id=f"m-{n}",
                processed_at=None if n % 3 == 0 else received,
            )
        )
    OldEvent.objects.bulk_create(rows, batch_size=500)
    return list(
        OldEvent.objects.order_by("pk").values_list(
            "pk", "message_id", "received_at", "processed_at", "source_id"
        )
    )


def test_the_migration_keeps_every_event_and_moves_queue_and_keys_off_it(
    server_source, at_0005, settings
):
    # (the source first: made with today's model, before the table goes back)
    settings.NUDGE_EVENT_DEDUPE_DAYS = 35
    contact = Contact.objects.create(external_id="u-1")
    with clock.frozen(NOW):
        # given the events table as it was, with events processed and not
        old = _old_events(at_0005, source_id=server_source.pk, contact_id=contact.pk)
        # when it is migrated
        _migrate(AFTER)
        # then every event is there with its id and fields
        assert list(
            Event.objects.order_by("pk").values_list(
                "pk", "message_id", "received_at", "source_id"
            )
        ) == [(pk, m, r, s) for pk, m, r, _processed, s in old]
        # the unprocessed ones, and only they, are pending
        assert set(PendingEvent.objects.values_list("event_id", flat=True)) == {
            pk for pk, _m, _r, processed, _s in old if processed is None
        }
        # the keys are those of the window (a deleted source's dedupes nothing)
        cutoff = NOW - dt.timedelta(days=35)
        assert set(EventKey.objects.values_list("message_id", flat=True)) == {
            m for _pk, m, r, _p, s in old if r >= cutoff and s is not None
        }
        # a replay inside the window is a duplicate, one from before it is new
        inside, outside = old[-2][1], old[0][1]
        replays = [
            Track(userId="u-1", event="again", messageId=message_id)
            for message_id in [inside, outside, str(uuid.uuid4())]
        ]
        result = events_ingest(source=server_source, messages=replays)
        assert (result.accepted, result.duplicates) == (2, 1)
        # and new events get new ids, after the old ones
        assert min(result.event_ids) > old[-1][0]


def test_the_migrated_table_is_partitioned_by_month_on_postgresql(
    server_source, at_0005, require_postgres
):
    contact = Contact.objects.create(external_id="u-1")
    with clock.frozen(NOW):
        # given events over four months
        _old_events(at_0005, source_id=server_source.pk, contact_id=contact.pk)
        # when migrated
        _migrate(AFTER)
        # then each month has its partition, holding its rows, and so do the
        # months ahead; the default partition is empty
        assert is_partitioned()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT tableoid::regclass::text, min(received_at), count(*) "
                "FROM events_event GROUP BY 1 ORDER BY 2"
            )
            counts = {name: count for name, _first, count in cursor.fetchall()}
        assert DEFAULT_PARTITION not in counts
        assert sum(counts.values()) == ROWS
        assert list(counts) == [
            partition_name(dt.datetime(2031, month, 1, tzinfo=dt.UTC))
            for month in [2, 3, 4, 5, 6]
        ]
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT to_regclass(%s)", [partition_name(NOW.replace(month=8, day=1))]
            )
            assert cursor.fetchone()[0] is not None
