"""The events table that stays fast as it grows.

- Dedupe of (source, messageId) moves to EventKey (the keys of the last
  NUDGE_EVENT_DEDUPE_DAYS), so the events table loses its global unique index.
- "Not processed yet" moves to PendingEvent, so the events table loses processed_at
  and its partial index, and processing no longer rewrites event rows.
- On PostgreSQL, events_event becomes partitioned by month of received_at
  (apps/events/partitions.py): a new table, its rows copied over, then swapped in.

Every step runs in the migration's one transaction: the events table is locked for
the whole of it (see bench/migrate_events.py for how long that is). On SQLite the
table stays plain; the same model changes apply.
"""

from django.conf import settings
from django.db import migrations, models

OLD = "events_event_unpartitioned"
PARTITIONED = "events_event_partitioned"


def fill_keys_and_pending(apps, schema_editor):
    """The keys of events inside the window, the unprocessed events' queue rows."""
    import datetime as dt

    from apps.core import clock

    cutoff = clock.now() - dt.timedelta(days=settings.NUDGE_EVENT_DEDUPE_DAYS)
    with schema_editor.connection.cursor() as cursor:
        # The unique (source, message_id) held until now: no key comes twice. A
        # row whose source was deleted (NULL) dedupes nothing any more.
        cursor.execute(
            "INSERT INTO events_eventkey (source_id, message_id, received_at) "
            "SELECT source_id, message_id, received_at FROM events_event "
            "WHERE source_id IS NOT NULL AND received_at >= %s",
            [cutoff],
        )
        # Dead-lettered events were marked processed: they stay off the queue.
        cursor.execute(
            "INSERT INTO events_pendingevent (event_id, received_at) "
            "SELECT id, received_at FROM events_event WHERE processed_at IS NULL"
        )


def restore_processed_at(apps, schema_editor):
    """Backwards: an event off the queue was processed (when is not known any
    more: its arrival stands in)."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "UPDATE events_event SET processed_at = received_at WHERE NOT EXISTS ("
            " SELECT 1 FROM events_pendingevent p WHERE p.event_id = events_event.id)"
        )


def drop_repeats(apps, schema_editor):
    """Backwards, before the unique (source, message_id) comes back: a message
    sent again after the window was stored again; the first one stays."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM events_event WHERE EXISTS ("
            " SELECT 1 FROM events_event o WHERE o.source_id = events_event.source_id"
            " AND o.message_id = events_event.message_id AND o.id < events_event.id)"
        )


def _fk_to_contacts(cursor, table: str) -> str:
    cursor.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass "
        "AND contype = 'f'",
        [table],
    )
    return cursor.fetchone()[0]


def _columns(cursor, table: str) -> str:
    cursor.execute(
        "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) "
        "FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND NOT attisdropped",
        [table],
    )
    return cursor.fetchone()[0]


def _set_aside(cursor, model, new_name: str) -> str:
    """Rename events_event (its sequence and primary key too) out of the way and
    drop its secondary indexes and foreign key, whose names the new table takes;
    returns the foreign key's name."""
    fk = _fk_to_contacts(cursor, "events_event")
    cursor.execute("SELECT pg_get_serial_sequence('events_event', 'id')")
    sequence = cursor.fetchone()[0]
    cursor.execute(f"ALTER TABLE events_event DROP CONSTRAINT {fk}")
    for index in model._meta.indexes:
        cursor.execute(f"DROP INDEX {index.name}")
    cursor.execute(f"ALTER TABLE events_event RENAME TO {new_name}")
    cursor.execute(f"ALTER SEQUENCE {sequence} RENAME TO {new_name}_id_seq")
    cursor.execute(
        f"ALTER TABLE {new_name} RENAME CONSTRAINT events_event_pkey TO {new_name}_pkey"
    )
    return fk


def _copy_rows_and_ids(cursor, source: str) -> None:
    columns = _columns(cursor, source)
    cursor.execute(
        f"INSERT INTO events_event ({columns}) SELECT {columns} FROM {source}"  # noqa: S608
    )
    # New ids continue where the old table's left off.
    cursor.execute(
        "SELECT setval(pg_get_serial_sequence('events_event', 'id'), "
        f"last_value, is_called) FROM {source}_id_seq"  # noqa: S608
    )


def _months(cursor):
    from apps.core import clock
    from apps.events.partitions import MONTHS_AHEAD, add_months, month_of

    cursor.execute(f"SELECT min(received_at), max(received_at) FROM {OLD}")  # noqa: S608
    oldest, newest = cursor.fetchone()
    first = month_of(clock.now())
    last = add_months(first, MONTHS_AHEAD)
    if oldest is not None:
        first, last = min(first, month_of(oldest)), max(last, month_of(newest))
    month = first
    while month <= last:
        yield month
        month = add_months(month, 1)


def partition_events(apps, schema_editor):
    """PostgreSQL: the events table, partitioned by month of received_at."""
    if schema_editor.connection.vendor != "postgresql":
        return
    from apps.events.partitions import (
        DEFAULT_PARTITION,
        PARTITION_STORAGE,
        partition_create,
    )

    model = apps.get_model("events", "Event")
    with schema_editor.connection.cursor() as cursor:
        # index builds after the copy: sorting in memory rather than on disk
        cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
        fk = _set_aside(cursor, model, OLD)
        cursor.execute(
            f"CREATE TABLE events_event (LIKE {OLD} INCLUDING DEFAULTS "
            "INCLUDING IDENTITY) PARTITION BY RANGE (received_at)"
        )
        cursor.execute(
            f"CREATE TABLE {DEFAULT_PARTITION} PARTITION OF events_event DEFAULT "
            f"WITH ({PARTITION_STORAGE})"
        )
        for month in list(_months(cursor)):
            partition_create(month)
        # The rows first, the primary key, indexes and foreign key after: one
        # sorted build of each, not an insert into each for every row.
        _copy_rows_and_ids(cursor, OLD)
        cursor.execute(
            "ALTER TABLE events_event ADD CONSTRAINT events_event_pkey "
            "PRIMARY KEY (id, received_at)"
        )
        for index in model._meta.indexes:
            schema_editor.execute(index.create_sql(model, schema_editor))
        cursor.execute(
            f"ALTER TABLE events_event ADD CONSTRAINT {fk} FOREIGN KEY (contact_id) "
            "REFERENCES contacts_contact (id) DEFERRABLE INITIALLY DEFERRED"
        )
        cursor.execute(f"DROP TABLE {OLD}")
        # Statistics for the new partitions (autovacuum may be off, or not get to
        # them for a while): the planner then knows each one's size.
        cursor.execute("ANALYZE events_event")


def unpartition_events(apps, schema_editor):
    """Backwards on PostgreSQL: a plain events table again, the same rows and ids."""
    if schema_editor.connection.vendor != "postgresql":
        return
    model = apps.get_model("events", "Event")
    with schema_editor.connection.cursor() as cursor:
        _set_aside(cursor, model, PARTITIONED)
        # the table, its primary key on id, its foreign key and indexes (those two
        # at the end of the migration, after the copy)
        schema_editor.create_model(model)
        _copy_rows_and_ids(cursor, PARTITIONED)
        cursor.execute(f"DROP TABLE {PARTITIONED}")


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0007_source_double_opt_in"),
    ]

    operations = [
        migrations.CreateModel(
            name="EventKey",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "source_id",
                        "message_id",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("source_id", models.BigIntegerField()),
                ("message_id", models.CharField(max_length=100)),
                ("received_at", models.DateTimeField()),
            ],
        ),
        migrations.CreateModel(
            name="PendingEvent",
            fields=[
                ("event_id", models.BigIntegerField(primary_key=True, serialize=False)),
                ("received_at", models.DateTimeField()),
            ],
        ),
        migrations.RunPython(fill_keys_and_pending, restore_processed_at),
        migrations.RemoveConstraint(
            model_name="event",
            name="event_source_message_unique",
        ),
        migrations.RunPython(migrations.RunPython.noop, drop_repeats),
        migrations.RemoveIndex(
            model_name="event",
            name="event_unprocessed",
        ),
        migrations.RemoveField(
            model_name="event",
            name="processed_at",
        ),
        # after the fill: one sorted build each
        migrations.AddIndex(
            model_name="eventkey",
            index=models.Index(fields=["received_at"], name="eventkey_received"),
        ),
        migrations.AddIndex(
            model_name="pendingevent",
            index=models.Index(
                fields=["received_at", "event_id"], name="pending_received"
            ),
        ),
        migrations.RunPython(partition_events, unpartition_events),
    ]
