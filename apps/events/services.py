"""Writes for events: processing, sources, internally recorded events. Ingestion
(the tracking API's writes) is in ingestion.py."""

import datetime as dt
import logging

from django.db import IntegrityError, transaction

from apps.contacts.services import contacts_touch_last_seen
from apps.core import clock, hooks, jobs

from .models import Event, Source

logger = logging.getLogger(__name__)


# -- processing ----------------------------------------------------------------------


def events_process(*, event_ids: list[int]) -> int:
    """Run the per-event work for these ids once; returns how many it processed.

    The rows are locked and marked in one transaction with the hooks' work (segments,
    workflows), so a worker killed half-way leaves them unprocessed for the tick to
    re-enqueue, and two workers never process the same event.
    """
    with transaction.atomic():
        events = list(
            Event.objects.select_for_update(skip_locked=True)
            .filter(pk__in=event_ids, processed_at__isnull=True)
            .order_by("pk")
        )
        if not events:
            return 0
        last_seen: dict[int, dt.datetime] = {}
        for event in events:
            current = last_seen.get(event.contact_id)
            if current is None or event.timestamp > current:
                last_seen[event.contact_id] = event.timestamp
        contacts_touch_last_seen(seen=last_seen)
        hooks.run(hooks.EVENTS_INGESTED, events=events)
        Event.objects.filter(pk__in=[e.pk for e in events]).update(
            processed_at=clock.now()
        )
    return len(events)


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


# 500 ids keep a job's payload near 4 KB and its transaction short; 20 chunks a tick
# (10,000 events) drains any realistic backlog within a minute without flooding Redis.
REENQUEUE_CHUNK = 500
REENQUEUE_PER_TICK = 20 * REENQUEUE_CHUNK


def events_reenqueue_unprocessed(*, now: dt.datetime) -> int:
    """Tick task: hand unprocessed events that Redis lost back to the workers."""
    from django.conf import settings

    from .tasks import process_events

    cutoff = now - dt.timedelta(seconds=settings.NUDGE_REENQUEUE_AFTER_SECONDS)
    ids = list(
        Event.objects.filter(processed_at__isnull=True, received_at__lt=cutoff)
        .order_by("received_at", "pk")
        .values_list("pk", flat=True)[:REENQUEUE_PER_TICK]
    )
    for start in range(0, len(ids), REENQUEUE_CHUNK):
        chunk = ids[start : start + REENQUEUE_CHUNK]
        # The same first id gives the same job id, so a job still waiting in Redis
        # is not enqueued a second time by the next tick.
        jobs.enqueue(
            process_events, chunk, queue="events", job_id=f"events-retry-{chunk[0]}"
        )
    return len(ids)


# Events Nudge records itself (email delivered / opened / unsubscribed, segment
# entered, ...) belong to this source, so (source, message_id) dedupes them too.
INTERNAL_SOURCE_NAME = "Nudge (internal)"


def internal_source() -> Source:
    source, _created = Source.objects.get_or_create(
        name=INTERNAL_SOURCE_NAME, defaults={"kind": Source.Kind.SERVER}
    )
    return source


def event_record(
    *,
    contact_id: int,
    name: str,
    properties: dict,
    dedupe_key: str,
    timestamp: dt.datetime | None = None,
    process_now: bool = True,
) -> Event | None:
    """Record an event Nudge itself observed; None if ``dedupe_key`` was seen before.

    It goes through the same processing job as ingested events, so it can trigger
    and resume workflows and move segment membership. High-volume facts (one per
    email sent) pass ``process_now=False`` and are processed by the tick's sweep.
    """
    from .tasks import process_events

    now = clock.now()
    source = internal_source()
    try:
        with transaction.atomic():
            event = Event.objects.create(
                contact_id=contact_id,
                source=source,
                type=Event.Type.TRACK,
                name=name,
                properties=properties,
                context={"library": {"name": "nudge"}},
                timestamp=timestamp or now,
                received_at=now,
                message_id=dedupe_key[:100],
            )
    except IntegrityError:
        return None
    if process_now:
        jobs.enqueue(process_events, [event.pk], queue="events")
    # else the tick's sweep processes it with others, in batches of 500
    return event
