"""Ingestion: messages of a tracking API call in, Event rows (and their senders'
contacts) durably stored, and one processing job enqueued after the commit."""

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass, replace
from typing import Any

import orjson
from django.db import IntegrityError, connection, transaction

from apps.contacts.consent import api_proof
from apps.contacts.identity import CONSENT_TRAIT, Sighting, normalize_email
from apps.contacts.services import contacts_lookup, contacts_resolve
from apps.core import clock, jobs
from apps.core.group_commit import GroupCommit, Item

from . import schemas
from .models import Source
from .optin import new_contact_consent
from .privacy import context_to_store
from .storage import ids_in_order, insert_events, keys_in_window

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


class _Duplicates(Exception):
    """Some messages were stored before, and resolving their senders wrote something
    (traits, a new contact): roll back and go again without them, so that a repeat
    changes nothing."""

    def __init__(self, message_ids: set[str]) -> None:
        super().__init__(f"{len(message_ids)} duplicates")
        self.message_ids = message_ids


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
    messages = _unique_by_message_id(
        messages, source_id=source.pk, received_at=received_at
    )
    duplicates: set[str] = set()
    attempt = 1
    while True:
        fresh = [m for m in messages if m.messageId not in duplicates]
        try:
            event_ids = _ingest_once(
                source=source,
                messages=fresh,
                received_at=received_at,
                batch_sent_at=batch_sent_at,
                batch_context=batch_context or {},
            )
            return IngestResult(
                accepted=len(event_ids),
                duplicates=len(messages) - len(event_ids),
                event_ids=event_ids,
            )
        except _Duplicates as exc:
            # Each round drops at least one message, so this ends.
            duplicates |= exc.message_ids
        except IntegrityError:
            if attempt == INGEST_ATTEMPTS:
                raise
            logger.info("ingest race on source %s, retrying (%s)", source.pk, attempt)
            attempt += 1


def _unique_by_message_id(
    messages: list[schemas.Message], *, source_id: int, received_at: dt.datetime
) -> list[schemas.Message]:
    seen: set[str] = set()
    unique = []
    for index, message in enumerate(messages):
        if not message.messageId:
            message.messageId = content_message_id(
                message, source_id=source_id, received_at=received_at, index=index
            )
        if message.messageId not in seen:
            seen.add(message.messageId)
            unique.append(message)
    return unique


# What a client may change when it sends the same call again: when it sent it (and
# the id, which such a call does not have).
_TRANSPORT_FIELDS = {"messageId", "sentAt"}


def content_message_id(
    message: schemas.Message, *, source_id: int, received_at: dt.datetime, index: int
) -> str:
    """The messageId of a call that came without one: a hash of its source and its
    content (type, ids, timestamp, properties, context...), less what a resend
    changes. The same call sent again, by a client that lost the answer or by the
    door after a lost connection, gets the same id, so it is a duplicate.

    A call with no time of its own cannot be told from its resend by its content:
    two identical ones are two events. Such a call is told apart by when it arrived
    and its place in its batch (the door's own retry passes the same arrival time).
    """
    body = message.model_dump(mode="json", exclude=_TRANSPORT_FIELDS)
    if message.originalTimestamp is None and message.timestamp is None:
        body["nudge_arrival"] = [received_at.isoformat(), index]
    digest = hashlib.sha256(
        orjson.dumps([source_id, body], option=orjson.OPT_SORT_KEYS)
    ).hexdigest()
    return f"nudge-{digest[:32]}"  # 128 bits: no two calls meet by chance


def _ingest_once(
    *,
    source: Source,
    messages: list[schemas.Message],
    received_at: dt.datetime,
    batch_sent_at: dt.datetime | None,
    batch_context: dict,
) -> list[int]:
    """Resolve senders and store the events that are new; returns their ids. When
    it returns they are committed and their processing job is enqueued."""
    if not messages:
        return []
    this = _Call.of(source, messages, received_at, batch_sent_at, batch_context)
    if connection.vendor == "postgresql":
        return _ingest_postgres(this)
    return _ingest_portable(this)


def _ingest_postgres(this: "_Call") -> list[int]:
    source = this.source
    consent = new_contact_consent(source)
    lookup = contacts_lookup(
        sightings=this.sightings, trusted=source.is_server, default_consent=consent
    )
    if lookup.contact_ids is not None:
        # Everyone is known and nothing about them changes, so the events are the
        # only write: one INSERT, a transaction of its own (no BEGIN and COMMIT
        # round trips), durable when it returns. It skips duplicates, which thus
        # change nothing. If a merge deletes one of these contacts meanwhile, the
        # INSERT fails its foreign key check and events_ingest looks again.
        records = this.records(lookup.contact_ids)
        if connection.in_atomic_block:
            # Someone's transaction: these rows must commit (or not) with it.
            return _write_alone(records)
        # Calls on other threads of this process that got here at the same time
        # share the statement (and its commit) and the Redis round trip.
        return _known_senders.submit(_Write(records)).outcome()
    with transaction.atomic():
        resolution = contacts_resolve(
            sightings=this.sightings,
            trusted=source.is_server,
            lookup=lookup,
            default_consent=consent,
        )
        records = this.records(resolution.contact_ids)
        stored = insert_events(records)
        if len(stored) < len(records) and resolution.wrote:
            raise _Duplicates(
                {
                    r["message_id"]
                    for r in records
                    if (r["source_id"], r["message_id"]) not in stored
                }
            )
        event_ids = ids_in_order(records, stored)
        _enqueue_processing(event_ids)
    return event_ids


class _Write(Item):
    """A call's rows, waiting for a round of _known_senders."""

    __slots__ = ("records",)

    def __init__(self, records: list[dict[str, Any]]) -> None:
        super().__init__()
        self.records = records

    def outcome(self) -> list[int]:
        if isinstance(self.error, _Alone):
            # The shared statement failed: this call goes again on its own, so
            # that an error is its own (a merge's FK failure sends it back to
            # events_ingest to look again).
            return _write_alone(self.records)
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


def _write_alone(records: list[dict[str, Any]]) -> list[int]:
    """One call's rows in a statement of their own, then its processing job."""
    event_ids = ids_in_order(records, insert_events(records))
    _enqueue_processing(event_ids)
    return event_ids


class _Alone(Exception):
    """The round's statement failed; each call is to write its rows alone."""


def _write_round(writes: list[_Write]) -> None:
    """One INSERT for every call of the round and one Redis round trip for their
    processing jobs (still one job per call). A messageId that two calls of the
    round both carry is the first one's; the other counts it as a duplicate, as it
    would have a moment later."""
    first: dict[tuple[int, str], _Write] = {}
    records = []
    for write in writes:
        for record in write.records:
            key = (record["source_id"], record["message_id"])
            if key not in first:
                first[key] = write
                records.append(record)
    if len(writes) > 1:
        # In one order, so that two processes' rounds that share keys (a client's
        # retries) wait for each other rather than deadlock.
        records.sort(key=lambda r: (r["source_id"], r["message_id"]))
    try:
        stored = insert_events(records)
    except Exception as exc:
        for write in writes:
            write.error = exc if len(writes) == 1 else _Alone()
        return
    for write in writes:
        write.result = [
            stored[key]
            for r in write.records
            if (key := (r["source_id"], r["message_id"])) in stored
            and first[key] is write
        ]
    try:
        jobs.enqueue_each(
            _process_events(),
            [(write.result,) for write in writes if write.result],
            queue="events",
        )
    except Exception:
        # The events are committed and the callers get their answers; the
        # scheduler's tick hands unprocessed events to the workers.
        logger.exception("could not enqueue the processing of a round's events")


_known_senders: GroupCommit[_Write] = GroupCommit(_write_round)


def _ingest_portable(this: "_Call") -> list[int]:
    """SQLite (the demo): a SELECT for duplicates first, then bulk_create."""
    with transaction.atomic():
        this = this.without(
            keys_in_window(
                source_id=this.source.pk,
                message_ids=[m.messageId for m in this.messages],
            )
        )
        if not this.messages:
            return []
        resolution = contacts_resolve(
            sightings=this.sightings,
            trusted=this.source.is_server,
            default_consent=new_contact_consent(this.source),
        )
        records = this.records(resolution.contact_ids)
        event_ids = ids_in_order(records, insert_events(records))
        _enqueue_processing(event_ids)
    return event_ids


def _enqueue_processing(event_ids: list[int]) -> None:
    if event_ids:
        # One job per request, carrying every new id: never one per event. After
        # the commit (at once when there is no transaction open).
        jobs.enqueue(_process_events(), event_ids, queue="events")


def _process_events() -> Any:
    from .tasks import process_events

    return process_events


@dataclass
class _Call:
    """The messages of one call, with what ingestion works out from each."""

    source: Source
    received_at: dt.datetime
    messages: list[schemas.Message]
    contexts: list[dict]
    timestamps: list[dt.datetime]
    sightings: list[Sighting]

    @classmethod
    def of(
        cls,
        source: Source,
        messages: list[schemas.Message],
        received_at: dt.datetime,
        batch_sent_at: dt.datetime | None,
        batch_context: dict,
    ) -> "_Call":
        contexts = [context_to_store({**batch_context, **m.context}) for m in messages]
        timestamps = [
            event_timestamp(m, received_at=received_at, batch_sent_at=batch_sent_at)
            for m in messages
        ]
        sightings = [
            _sighting(m, ctx, ts, source)
            for m, ctx, ts in zip(messages, contexts, timestamps, strict=True)
        ]
        return cls(source, received_at, messages, contexts, timestamps, sightings)

    def without(self, message_ids: set[str]) -> "_Call":
        """The call less the messages with these ids."""
        keep = [
            i for i, m in enumerate(self.messages) if m.messageId not in message_ids
        ]
        return replace(
            self,
            messages=[self.messages[i] for i in keep],
            contexts=[self.contexts[i] for i in keep],
            timestamps=[self.timestamps[i] for i in keep],
            sightings=[self.sightings[i] for i in keep],
        )

    def records(self, contact_ids: list[int]) -> list[dict[str, Any]]:
        """Each event's every field, as insert_events (and Event) take them."""
        return [
            {
                "contact_id": contact_id,
                "source_id": self.source.pk,
                "type": m.type,
                "name": _event_name(m),
                "properties": _event_properties(m),
                "context": ctx,
                "timestamp": ts,
                "received_at": self.received_at,
                "message_id": m.messageId,
            }
            for m, ctx, ts, contact_id in zip(
                self.messages, self.contexts, self.timestamps, contact_ids, strict=True
            )
        ]


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
    if value is None or value.utcoffset() is not None:
        return value
    return value.replace(tzinfo=dt.UTC)  # a time without an offset is UTC


def _sighting(
    message: schemas.Message, context: dict, timestamp: dt.datetime, source: Source
) -> Sighting:
    kind = message.type
    # An identify's traits (RudderStack sends them in context.traits only), with
    # its email: the resolver decides whether this key may set it.
    traits = message.effective_traits() if kind == "identify" else None  # type: ignore[attr-defined]
    if traits is None and isinstance(context.get("traits"), dict):
        # analytics.js repeats identify traits in context.traits on every call;
        # they are traits there, never an identification.
        traits = {k: v for k, v in context["traits"].items() if k != "email"} or None
    return Sighting(
        anonymous_id=message.anonymousId,
        user_id=message.userId,
        email=normalize_email(traits.get("email"))
        if kind == "identify" and traits
        else None,
        traits=traits,
        previous_id=getattr(message, "previousId", None) if kind == "alias" else None,
        timestamp=timestamp,
        context_timezone=_str_or_none(context.get("timezone")),
        context_locale=_str_or_none(context.get("locale")),
        # Proof of a consent trait: the key, and the IP, form and wording in the
        # context (only for the few calls that carry one).
        consent_proof=api_proof(context, who=source.name, server=source.is_server)
        if traits and CONSENT_TRAIT in traits
        else None,
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
            if message.type == "page" and getattr(message, "category", None):
                extra["category"] = message.category
            return {**message.properties, **extra}
        case "identify":
            return {"traits": message.effective_traits()}  # type: ignore[attr-defined]
        case "group":
            return {"groupId": message.groupId, "traits": message.traits}
        case "alias":
            return {"previousId": message.previousId}
    return {}
