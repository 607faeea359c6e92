"""Writes for events: sources, merges, internally recorded events. Ingestion (the
tracking API's writes) is in ingestion.py, processing in processing.py."""

import datetime as dt
import logging
from dataclasses import dataclass

from apps.core import clock, jobs

from .models import Event, Source
from .storage import insert_events

logger = logging.getLogger(__name__)


def events_move_to_contact(*, source_id: int, target_id: int) -> dict[str, int]:
    """CONTACTS_MERGED hook: a merged contact's events belong to the survivor."""
    return {
        "events": Event.objects.filter(contact_id=source_id).update(
            contact_id=target_id
        )
    }


def source_create(
    *,
    name: str,
    kind: str = Source.Kind.BROWSER,
    allowed_origins: list[str] | None = None,
) -> tuple[Source, str]:
    """Create a source; returns it and its key (a server key is shown only now)."""
    source = Source(name=name, kind=kind, allowed_origins=allowed_origins or [])
    key = source.new_key()
    source.save()
    return source, key


def source_rotate_key(*, source: Source) -> str:
    """Give the source a new key; the old one stops working at once."""
    key = source.new_key()
    source.key_rotated_at = clock.now()
    source.save(
        update_fields=[
            "public_key",
            "secret_key_hash",
            "secret_key_hint",
            "key_rotated_at",
        ]
    )
    return key


# Events Nudge records itself (email delivered / opened / unsubscribed, segment
# entered, ...) belong to this source, so (source, message_id) dedupes them too.
INTERNAL_SOURCE_NAME = "Nudge (internal)"


def internal_source() -> Source:
    source, _created = Source.objects.get_or_create(
        name=INTERNAL_SOURCE_NAME, defaults={"kind": Source.Kind.SERVER}
    )
    return source


# The context of an event Nudge records itself; BY_CONTACT marks one the contact
# did (apps/events/processing.py: only those, and ingested events, make them seen).
BY_CONTACT = "by_contact"


def internal_context(*, by_contact: bool) -> dict:
    context: dict = {"library": {"name": "nudge"}}
    if by_contact:
        context[BY_CONTACT] = True
    return context


def event_record(
    *,
    contact_id: int,
    name: str,
    properties: dict,
    dedupe_key: str,
    timestamp: dt.datetime | None = None,
    process_now: bool = True,
    by_contact: bool = False,
) -> Event | None:
    """Record an event Nudge itself observed; None if ``dedupe_key`` was seen before.

    It goes through the same processing job as ingested events, so it can trigger
    and resume workflows and move segment membership. High-volume facts (one per
    email sent) pass ``process_now=False`` and are processed by the tick's sweep.
    ``by_contact``: the contact did it (a click, a choice on the preference page),
    so it makes them seen (last_seen_at); what Nudge did to them does not.
    """
    from .tasks import process_events

    now = clock.now()
    record = _internal_record(
        InternalEvent(contact_id, name, properties, dedupe_key, timestamp),
        source_id=internal_source().pk,
        context=internal_context(by_contact=by_contact),
        now=now,
    )
    stored = insert_events([record])
    if not stored:
        return None
    event = Event(pk=next(iter(stored.values())), **record)
    event._state.adding, event._state.db = False, "default"  # as if read back
    if process_now:
        jobs.enqueue(process_events, [event.pk], queue="events")
    # else the tick's sweep processes it with others, in batches of 500
    return event


@dataclass(frozen=True)
class InternalEvent:
    """One event for events_record_many."""

    contact_id: int
    name: str
    properties: dict
    dedupe_key: str
    timestamp: dt.datetime | None = None


def _internal_record(
    event: InternalEvent, *, source_id: int, context: dict, now: dt.datetime
) -> dict:
    return {
        "contact_id": event.contact_id,
        "source_id": source_id,
        "type": Event.Type.TRACK.value,
        "name": event.name,
        "properties": event.properties,
        "context": context,
        "timestamp": event.timestamp or now,
        "received_at": now,
        "message_id": event.dedupe_key[:100],
    }


def events_record_many(*, events: list[InternalEvent]) -> int:
    """Record many events Nudge observed, as event_record(process_now=False) would
    one by one, in one INSERT: one whose ``dedupe_key`` was seen before is left
    out (the same EventKey window as ingestion's). They are processed by the
    tick's sweep, like every high-volume fact. How many rows the INSERT was given
    (duplicates included)."""
    if not events:
        return 0
    now = clock.now()
    source_id = internal_source().pk
    context = internal_context(by_contact=False)
    # As ingestion writes events: one JSON document, not bulk_create, whose
    # preparing of each field of each row cost more CPU than the insert (a
    # campaign records one event a message).
    insert_events(
        [
            _internal_record(e, source_id=source_id, context=context, now=now)
            for e in events
        ]
    )
    return len(events)
