"""Writes for events: ingestion, processing, sources."""

import datetime as dt
import logging
import uuid
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.contacts.identity import Sighting, normalize_email
from apps.contacts.services import contacts_resolve, contacts_touch_last_seen
from apps.core import clock, hooks, jobs

from . import schemas
from .models import Event, Source

logger = logging.getLogger(__name__)

# Identity races (two requests creating the same new visitor at once) and duplicate
# deliveries racing each other end in an IntegrityError; a retry then sees the
# winner's committed rows. Three tries is plenty: each loser finds the rows next time.
INGEST_ATTEMPTS = 3


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    event_ids: list[int]


def events_ingest(
    *,
    source: Source,
    messages: list[schemas.Message],
    received_at: dt.datetime | None = None,
    batch_sent_at: dt.datetime | None = None,
    batch_context: dict | None = None,
) -> IngestResult:
    """Store messages as Events, durably, and hand them to processing after commit.

    All or nothing: on any error no row of the call is written. A messageId this
    source already sent is skipped (and counted as a duplicate), changing nothing.
    """
    received_at = received_at or clock.now()
    messages = _unique_by_message_id(messages)
    for attempt in range(1, INGEST_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                result = _ingest_once(
                    source=source,
                    messages=messages,
                    received_at=received_at,
                    batch_sent_at=batch_sent_at,
                    batch_context=batch_context or {},
                )
                if result.event_ids:
                    from .tasks import process_events

                    # One job per request, carrying every new id: never one per event.
                    jobs.enqueue(process_events, result.event_ids, queue="events")
                return result
        except IntegrityError:
            if attempt == INGEST_ATTEMPTS:
                raise
            logger.info("ingest race on source %s, retrying (%s)", source.pk, attempt)
    raise AssertionError("unreachable")


def _unique_by_message_id(messages: list[schemas.Message]) -> list[schemas.Message]:
    seen: set[str] = set()
    unique = []
    for message in messages:
        if not message.messageId:
            # Without a messageId we cannot dedupe; give it one so the row is whole.
            message.messageId = f"nudge-{uuid.uuid4()}"
        if message.messageId not in seen:
            seen.add(message.messageId)
            unique.append(message)
    return unique


def _ingest_once(
    *,
    source: Source,
    messages: list[schemas.Message],
    received_at: dt.datetime,
    batch_sent_at: dt.datetime | None,
    batch_context: dict,
) -> IngestResult:
    already = set(
        Event.objects.filter(
            source=source, message_id__in=[m.messageId for m in messages]
        ).values_list("message_id", flat=True)
    )
    fresh = [m for m in messages if m.messageId not in already]
    if not fresh:
        return IngestResult(accepted=0, duplicates=len(messages), event_ids=[])

    contexts = [{**batch_context, **m.context} for m in fresh]
    timestamps = [
        event_timestamp(m, received_at=received_at, batch_sent_at=batch_sent_at)
        for m in fresh
    ]
    contact_ids = contacts_resolve(
        sightings=[
            _sighting(m, ctx, ts)
            for m, ctx, ts in zip(fresh, contexts, timestamps, strict=True)
        ],
        trusted=source.is_server,
    )
    events = [
        Event(
            contact_id=contact_id,
            source_id=source.pk,
            type=m.type,
            name=_event_name(m),
            properties=_event_properties(m),
            context=ctx,
            timestamp=ts,
            received_at=received_at,
            message_id=m.messageId,
        )
        for m, ctx, ts, contact_id in zip(
            fresh, contexts, timestamps, contact_ids, strict=True
        )
    ]
    # A messageId stored by a concurrent request since the check above raises
    # IntegrityError here, and the retry in events_ingest skips it.
    Event.objects.bulk_create(events)
    return IngestResult(
        accepted=len(events),
        duplicates=len(messages) - len(events),
        event_ids=[e.pk for e in events],
    )


def event_timestamp(
    message: schemas.Message,
    *,
    received_at: dt.datetime,
    batch_sent_at: dt.datetime | None = None,
) -> dt.datetime:
    """When it happened, by the server's clock.

    The Segment spec: timestamp = receivedAt - (sentAt - originalTimestamp), which
    cancels the sender's clock skew. Without sentAt the client time is trusted;
    without any client time, the event happened when it arrived.
    """
    client_time = _aware(message.originalTimestamp or message.timestamp)
    sent_at = _aware(message.sentAt or batch_sent_at)
    if client_time is None:
        return received_at
    if sent_at is None:
        return client_time
    return received_at - (sent_at - client_time)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return timezone.make_aware(value, dt.UTC) if timezone.is_naive(value) else value


def _sighting(
    message: schemas.Message, context: dict, timestamp: dt.datetime
) -> Sighting:
    traits = getattr(message, "traits", None) if message.type == "identify" else None
    if traits is None and isinstance(context.get("traits"), dict):
        # analytics.js repeats identify traits in context.traits on every call.
        traits = {k: v for k, v in context["traits"].items() if k != "email"} or None
    return Sighting(
        anonymous_id=message.anonymousId,
        user_id=message.userId,
        email=normalize_email(traits.get("email"))
        if message.type == "identify" and traits
        else None,
        traits=traits,
        previous_id=getattr(message, "previousId", None),
        timestamp=timestamp,
        context_timezone=_str_or_none(context.get("timezone")),
        context_locale=_str_or_none(context.get("locale")),
    )


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _event_name(message: schemas.Message) -> str:
    return message.event if message.type == "track" else message.type


def _event_properties(message: schemas.Message) -> dict:
    match message.type:
        case "track":
            return message.properties
        case "page" | "screen":
            extra = {"name": message.name} if message.name else {}
            if getattr(message, "category", None):
                extra["category"] = message.category
            return {**message.properties, **extra}
        case "identify":
            return {"traits": message.traits}
        case "group":
            return {"groupId": message.groupId, "traits": message.traits}
        case "alias":
            return {"previousId": message.previousId}
    return {}


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
