"""Writing event rows: each with its dedupe key (EventKey) and its place in the
processing queue (PendingEvent), in one statement on PostgreSQL.

Every writer of events goes through here (ingestion, event_record,
events_record_many) or through store_events_sql (segments' one-statement apply),
so "a (source, messageId) seen inside the window changes nothing" and "a new event
is pending until processed" hold on every path.
"""

import datetime as dt
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from apps.core import clock
from apps.core.db import json_document, postgres_cursor

from .models import Event, EventKey, PendingEvent

# (source id, messageId) -> the id of the event stored for it
Stored = dict[tuple[int, str], int]


def dedupe_window() -> dt.timedelta:
    return dt.timedelta(days=settings.NUDGE_EVENT_DEDUPE_DAYS)


def store_events_sql(*, incoming: str) -> str:
    """The CTEs that store the rows of the CTE ``incoming`` whose key is new:
    ``keys`` (the keys this statement took), ``stored`` (the events written:
    id, source_id, message_id, contact_id, name, received_at) and ``queued``
    (their pending rows). The caller's statement starts ``WITH incoming AS (...),``,
    follows with this and ends with a SELECT from ``stored``.

    ``incoming`` has the events' columns and ``ord``, the order to take keys and
    ids in. A key older than the window is taken again (updated): its message is a
    new event. Keys are taken in ``ord`` order, so two statements sharing keys (a
    client's retries) wait for each other instead of deadlocking; ids follow
    ``ord`` too, so a call's events are processed in the order it sent them.
    """
    days = int(settings.NUDGE_EVENT_DEDUPE_DAYS)
    return f"""
keys AS (
    INSERT INTO events_eventkey AS k (source_id, message_id, received_at)
    SELECT source_id, message_id, received_at FROM {incoming} ORDER BY ord
    ON CONFLICT (source_id, message_id) DO UPDATE
        SET received_at = EXCLUDED.received_at
        WHERE k.received_at < EXCLUDED.received_at - interval '{days} days'
    RETURNING source_id, message_id
), stored AS (
    INSERT INTO events_event
        (contact_id, source_id, type, name, properties, context, timestamp,
         received_at, message_id)
    SELECT i.contact_id, i.source_id, i.type, i.name, i.properties, i.context,
           i.timestamp, i.received_at, i.message_id
    FROM {incoming} AS i JOIN keys USING (source_id, message_id)
    ORDER BY i.ord
    RETURNING id, source_id, message_id, contact_id, name, received_at
), queued AS (
    INSERT INTO events_pendingevent (event_id, received_at)
    SELECT id, received_at FROM stored
)
"""  # noqa: S608 - names and an integer of ours, no input


# The rows travel as one JSON document that orjson writes in C: ~6 us of CPU a row,
# where bulk_create's per-field preparation and quoting cost ~65 us and psycopg's
# array parameters ~9 us. PostgreSQL does about the same work for each.
_INCOMING = """
WITH incoming AS (
    SELECT * FROM ROWS FROM (
        jsonb_to_recordset(%b::jsonb) AS (
            contact_id bigint, source_id bigint, type text, name text,
            properties jsonb, context jsonb, timestamp timestamptz,
            received_at timestamptz, message_id text)
    ) WITH ORDINALITY AS r(contact_id, source_id, type, name, properties, context,
                           timestamp, received_at, message_id, ord)
),"""


def insert_events(records: list[dict[str, Any]]) -> Stored:
    """Insert the records whose (source, messageId) is not in the window; returns
    the ids of those stored, by (source id, messageId). A key twice in the list is
    one event, the first. Each stored event is pending (for processing).

    PostgreSQL: one statement (atomic, one round trip; durable when it returns
    outside a transaction). Elsewhere, one transaction."""
    first: dict[tuple[int, str], dict[str, Any]] = {}
    for record in records:
        first.setdefault((record["source_id"], record["message_id"]), record)
    records = list(first.values())  # ON CONFLICT DO UPDATE takes a key once
    if not records:
        return {}
    if connection.vendor == "postgresql":
        return _insert_postgres(records)
    return _insert_portable(records)


def _insert_postgres(records: list[dict[str, Any]]) -> Stored:
    sql = _INCOMING + store_events_sql(incoming="incoming")
    sql += "SELECT source_id, message_id, id FROM stored"
    with postgres_cursor() as cursor:
        cursor.execute(sql, [json_document(records)])
        return {
            (source_id, message_id): pk
            for source_id, message_id, pk in cursor.fetchall()
        }


def keys_in_window(*, source_id: int, message_ids: list[str]) -> set[str]:
    """The messageIds of these that the source sent inside the window."""
    return set(
        EventKey.objects.filter(
            source_id=source_id,
            message_id__in=message_ids,
            received_at__gte=clock.now() - dedupe_window(),
        ).values_list("message_id", flat=True)
    )


def _insert_portable(records: list[dict[str, Any]]) -> Stored:
    """SQLite (the demo): one writer at a time (IMMEDIATE transactions), so reading
    the keys and then writing in one transaction cannot race another writer."""
    window = dedupe_window()
    with transaction.atomic():
        seen = _keys_seen(records)
        fresh, expired = [], []
        for record in records:
            key = (record["source_id"], record["message_id"])
            seen_at = seen.get(key)
            if seen_at is None:
                fresh.append(record)
            elif seen_at < record["received_at"] - window:
                fresh.append(record)
                expired.append(key)
        for source_id, message_id in expired:  # rare: a replay after the window
            EventKey.objects.filter(source_id=source_id, message_id=message_id).delete()
        events = Event.objects.bulk_create([Event(**r) for r in fresh])
        EventKey.objects.bulk_create(
            [
                EventKey(
                    source_id=e.source_id,
                    message_id=e.message_id,
                    received_at=e.received_at,
                )
                for e in events
            ]
        )
        PendingEvent.objects.bulk_create(
            [PendingEvent(event_id=e.pk, received_at=e.received_at) for e in events]
        )
    return {(e.source_id, e.message_id): e.pk for e in events}


def _keys_seen(records: list[dict[str, Any]]) -> dict[tuple[int, str], dt.datetime]:
    seen = {}
    for source_id in {r["source_id"] for r in records}:
        message_ids = [r["message_id"] for r in records if r["source_id"] == source_id]
        for key in EventKey.objects.filter(
            source_id=source_id, message_id__in=message_ids
        ):
            seen[(source_id, key.message_id)] = key.received_at
    return seen


def ids_in_order(records: list[dict[str, Any]], stored: Stored) -> list[int]:
    return [
        stored[key]
        for r in records
        if (key := (r["source_id"], r["message_id"])) in stored
    ]


# Keys a tick prunes at most: a DELETE of 10,000 narrow rows is a short moment of
# the tick, and at a tick every 5 s it keeps up with 2,000 events/s sustained (a
# backlog of old keys goes over the following ticks; until then the window check
# in the INSERT already treats them as expired).
PRUNE_PER_TICK = 10_000


def event_keys_prune(*, now: dt.datetime) -> int:
    """Tick task: forget the oldest keys older than the window; how many."""
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM events_eventkey WHERE (source_id, message_id) IN ("
            " SELECT source_id, message_id FROM events_eventkey"
            " WHERE received_at < %s ORDER BY received_at LIMIT %s)",
            [now - dedupe_window(), PRUNE_PER_TICK],
        )
        return cursor.rowcount
