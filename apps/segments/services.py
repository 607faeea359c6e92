"""Writes for segments: membership (full and incremental), static lists."""

import csv
import datetime as dt
import io
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef

from apps.contacts.models import Contact
from apps.core import clock, jobs
from apps.events.models import Event
from apps.events.services import internal_source
from apps.events.storage import insert_events, store_events_sql

from .conditions import (
    check,
    checked,
    evaluate_facts,
    load_facts,
    matching_sql,
)
from .models import Segment, SegmentMembership, SegmentRefresh

logger = logging.getLogger(__name__)

SEGMENT_ENTERED = "segment_entered"
SEGMENT_EXITED = "segment_exited"
# Events for a refresh go in with bulk inserts of this many rows (~2 MB each).
EVENT_BATCH = 5_000
EVENT_CONTEXT = {"library": {"name": "nudge"}}


@dataclass
class Changes:
    entered: list[int] = field(default_factory=list)
    exited: list[int] = field(default_factory=list)


def segment_refresh_full(
    *, segment: Segment, now: dt.datetime | None = None
) -> SegmentRefresh:
    """Recompute a dynamic segment over all contacts and reconcile its membership.

    Two set-based statements (close what no longer matches, open what newly does) in
    one transaction; then one segment_entered / segment_exited event per change.
    """
    now = now or clock.now()
    started = time.perf_counter()
    condition = check(segment.condition)
    match_sql, match_params = matching_sql(condition, now=now)
    table = SegmentMembership._meta.db_table
    ts = (
        now
        if connection.vendor == "postgresql"
        else connection.ops.adapt_datetimefield_value(now)
    )
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET exited_at = %s WHERE segment_id = %s "  # noqa: S608
                f"AND exited_at IS NULL AND contact_id NOT IN ({match_sql}) "
                "RETURNING contact_id",
                [ts, segment.pk, *match_params],
            )
            exited = [row[0] for row in cursor.fetchall()]
            cursor.execute(
                f"INSERT INTO {table} (segment_id, contact_id, entered_at) "  # noqa: S608
                f"SELECT %s, matching.id, %s FROM ({match_sql}) matching "
                f"WHERE NOT EXISTS (SELECT 1 FROM {table} m WHERE m.segment_id = %s "
                "AND m.contact_id = matching.id AND m.exited_at IS NULL) "
                "RETURNING contact_id",
                [segment.pk, ts, *match_params, segment.pk],
            )
            entered = [row[0] for row in cursor.fetchall()]
        members = SegmentMembership.objects.filter(
            segment=segment, exited_at__isnull=True
        ).count()
        _record_changes(segment, Changes(entered=entered, exited=exited), now)
        refresh = _finish_refresh(
            segment, SegmentRefresh.Kind.FULL, now, started, entered, exited, members
        )
    logger.info(
        "segment refreshed",
        extra={
            "segment_id": segment.pk,
            "entered": len(entered),
            "exited": len(exited),
            "members": members,
            "duration_ms": refresh.duration_ms,
        },
    )
    return refresh


def segment_update_for_contacts(
    *, segment: Segment, contact_ids: Iterable[int], now: dt.datetime | None = None
) -> Changes:
    """Re-evaluate one dynamic segment for a few contacts (the incremental path).

    Two reads (the contacts with their open membership, then their events) and, only
    when something changed, one write.
    """
    now = now or clock.now()
    condition, refs = checked(segment.condition)
    ids = sorted(set(contact_ids))
    contacts = Contact.objects.filter(pk__in=ids).annotate(
        is_member=Exists(
            SegmentMembership.objects.filter(
                segment=segment, contact=OuterRef("pk"), exited_at__isnull=True
            )
        )
    )
    changes = Changes()
    for contact in contacts:
        matches = evaluate_facts(condition, load_facts(contact, refs, now=now), now=now)
        if matches and not contact.is_member:
            changes.entered.append(contact.pk)
        elif not matches and contact.is_member:
            changes.exited.append(contact.pk)
    if changes.entered or changes.exited:
        changes = _apply(segment, changes, now)
    return changes


def _apply(segment: Segment, changes: Changes, now: dt.datetime) -> Changes:
    """Open and close memberships, keep the running count, record the changes as
    events and hand those to processing; returns the changes that really happened
    (a concurrent job may have made some of them first)."""
    if connection.vendor == "postgresql":
        done = _apply_in_one_statement(segment, changes, now)
    else:
        done = _apply_portably(segment, changes, now)
    return done


# One statement, so one round trip and atomic without a transaction of its own: the
# events are written only for the memberships this statement really opened or closed,
# so two jobs racing over the same contact record one change, not two. They are
# stored as every event is (store_events_sql: dedupe key, pending row).
_APPLY_SQL = """
WITH closed AS (
    UPDATE segments_segmentmembership SET exited_at = %(now)s
    WHERE segment_id = %(segment)s AND exited_at IS NULL
      AND contact_id = ANY(%(exited)s::bigint[])
    RETURNING contact_id
), opened AS (
    INSERT INTO segments_segmentmembership (segment_id, contact_id, entered_at)
    SELECT %(segment)s, c, %(now)s FROM unnest(%(entered)s::bigint[]) AS c
    ON CONFLICT DO NOTHING
    RETURNING contact_id
), counted AS (
    UPDATE segments_segment
    SET member_count = GREATEST(
        member_count + (SELECT count(*) FROM opened) - (SELECT count(*) FROM closed), 0)
    WHERE id = %(segment)s
), changed AS (
    SELECT contact_id, 'segment_entered' AS name, 'entered' AS verb FROM opened
    UNION ALL
    SELECT contact_id, 'segment_exited', 'exited' FROM closed
), incoming AS (
    SELECT changed.contact_id, %(source)s::bigint AS source_id, 'track' AS type,
           changed.name, %(properties)s::jsonb AS properties,
           %(context)s::jsonb AS context, %(now)s::timestamptz AS timestamp,
           %(now)s::timestamptz AS received_at,
           left('seg:' || %(segment)s || ':' || changed.verb || ':'
                || changed.contact_id || ':' || %(stamp)s, 100) AS message_id,
           changed.contact_id AS ord
    FROM changed
),
{store}
SELECT id, name, contact_id FROM stored
"""


def _apply_in_one_statement(
    segment: Segment, changes: Changes, now: dt.datetime
) -> Changes:
    with connection.cursor() as cursor:
        cursor.execute(
            _APPLY_SQL.format(store=store_events_sql(incoming="incoming")),
            {
                "now": now,
                "segment": segment.pk,
                "entered": changes.entered,
                "exited": changes.exited,
                "source": internal_source().pk,
                "properties": json.dumps(
                    {"segment_id": segment.pk, "segment": segment.name}
                ),
                "context": json.dumps(EVENT_CONTEXT),
                "stamp": now.isoformat(),
            },
        )
        rows = cursor.fetchall()
    done = Changes(
        entered=[row[2] for row in rows if row[1] == SEGMENT_ENTERED],
        exited=[row[2] for row in rows if row[1] == SEGMENT_EXITED],
    )
    if rows:
        from apps.events.tasks import process_events

        jobs.enqueue(process_events, [row[0] for row in rows], queue="events")
    return done


def _apply_portably(segment: Segment, changes: Changes, now: dt.datetime) -> Changes:
    # SQLite runs one writing transaction at a time (IMMEDIATE), so reading what is
    # open and then writing inside it is safe from a racing job.
    with transaction.atomic():
        open_rows = SegmentMembership.objects.filter(
            segment=segment,
            contact_id__in=[*changes.entered, *changes.exited],
            exited_at__isnull=True,
        )
        already = set(open_rows.values_list("contact_id", flat=True))
        done = Changes(
            entered=[c for c in changes.entered if c not in already],
            exited=[c for c in changes.exited if c in already],
        )
        if done.exited:
            open_rows.filter(contact_id__in=done.exited).update(exited_at=now)
        if done.entered:
            SegmentMembership.objects.bulk_create(
                [
                    SegmentMembership(segment=segment, contact_id=c, entered_at=now)
                    for c in done.entered
                ]
            )
        # A running count: COUNT(*) over a big segment costs milliseconds per event.
        # The full refresh sets the exact number again.
        delta = len(done.entered) - len(done.exited)
        if delta:
            Segment.objects.filter(pk=segment.pk).update(
                member_count=F("member_count") + delta
            )
        _record_changes(segment, done, now)
    return done


def _record_changes(segment: Segment, changes: Changes, now: dt.datetime) -> None:
    """segment_entered / segment_exited events: facts for workflows and timelines.

    Bulk-inserted and left for the tick's processing sweep, so a refresh that moves a
    million contacts does not enqueue a million jobs.
    """
    source_id = internal_source().pk
    stamp = now.isoformat()
    records = [
        {
            "contact_id": contact_id,
            "source_id": source_id,
            "type": Event.Type.TRACK.value,
            "name": name,
            "properties": {"segment_id": segment.pk, "segment": segment.name},
            "context": EVENT_CONTEXT,
            "timestamp": now,
            "received_at": now,
            "message_id": f"seg:{segment.pk}:{name[8:]}:{contact_id}:{stamp}"[:100],
        }
        for name, ids in (
            (SEGMENT_ENTERED, changes.entered),
            (SEGMENT_EXITED, changes.exited),
        )
        for contact_id in ids
    ]
    # A change recorded already (a retried job) is left out by its dedupe key.
    if records and len(records) <= EVENT_BATCH:
        # Few changes (the usual case): process them now, not at the next sweep.
        from apps.events.tasks import process_events

        stored = insert_events(records)
        if stored:
            jobs.enqueue(process_events, list(stored.values()), queue="events")
        return
    for start in range(0, len(records), EVENT_BATCH):
        insert_events(records[start : start + EVENT_BATCH])


def _finish_refresh(
    segment, kind, now, started, entered, exited, members
) -> SegmentRefresh:
    duration_ms = int((time.perf_counter() - started) * 1000)
    Segment.objects.filter(pk=segment.pk).update(
        member_count=members, last_refreshed_at=now
    )
    return SegmentRefresh.objects.create(
        segment=segment,
        kind=kind,
        started_at=now,
        duration_ms=duration_ms,
        entered=len(entered),
        exited=len(exited),
        members=members,
    )


# -- static lists -------------------------------------------------------------------


def segment_add_contacts(*, segment: Segment, contact_ids: Iterable[int]) -> int:
    now = clock.now()
    ids = set(contact_ids)
    already = set(
        SegmentMembership.objects.filter(
            segment=segment, contact_id__in=ids, exited_at__isnull=True
        ).values_list("contact_id", flat=True)
    )
    changes = Changes(entered=sorted(ids - already))
    if changes.entered:
        changes = _apply(segment, changes, now)
    return len(changes.entered)


def segment_remove_contacts(*, segment: Segment, contact_ids: Iterable[int]) -> int:
    now = clock.now()
    ids = set(contact_ids)
    present = set(
        SegmentMembership.objects.filter(
            segment=segment, contact_id__in=ids, exited_at__isnull=True
        ).values_list("contact_id", flat=True)
    )
    changes = Changes(exited=sorted(present))
    if changes.exited:
        changes = _apply(segment, changes, now)
    return len(changes.exited)


@dataclass
class ImportReport:
    added: int
    already: int
    unmatched: list[tuple[int, str]]  # (line number, value)


class ImportError_(ValueError):
    pass


def contacts_by_keys(keys: Iterable[str]) -> dict[str, int]:
    """email (any case) or user id -> contact id."""
    keys = [k.strip() for k in keys if k and k.strip()]
    emails = {k.lower() for k in keys if "@" in k}
    user_ids = {k for k in keys if "@" not in k}
    found: dict[str, int] = {}
    for pk, email in Contact.objects.filter(email__in=emails).values_list(
        "pk", "email"
    ):
        found[email.lower()] = pk
    for pk, user_id in Contact.objects.filter(external_id__in=user_ids).values_list(
        "pk", "external_id"
    ):
        found[user_id] = pk
    return {
        k: found[k.lower() if "@" in k else k]
        for k in keys
        if (k.lower() if "@" in k else k) in found
    }


def segment_import_csv(
    *, segment: Segment, data: bytes, remove: bool = False
) -> ImportReport:
    """Add (or remove) the contacts a CSV names by email or user id, all or nothing.

    The first column, or a column headed email / user_id / userId, is read. Rows that
    match no contact are reported, with their line numbers.
    """
    if segment.is_dynamic:
        raise ImportError_("only static lists take uploads; this segment is dynamic")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportError_("the file is not UTF-8 text") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise ImportError_("the file is empty")
    column, start = 0, 0
    header = [h.strip().lower() for h in rows[0]]
    for name in ("email", "user_id", "userid", "external_id"):
        if name in header:
            column, start = header.index(name), 1
            break
    values = [
        (line, row[column].strip())
        for line, row in enumerate(rows[start:], start=start + 1)
        if len(row) > column and row[column].strip()
    ]
    matched = contacts_by_keys(v for _, v in values)
    unmatched = [(line, v) for line, v in values if v not in matched]
    ids = set(matched.values())
    with transaction.atomic():
        if remove:
            changed = segment_remove_contacts(segment=segment, contact_ids=ids)
        else:
            changed = segment_add_contacts(segment=segment, contact_ids=ids)
    return ImportReport(added=changed, already=len(ids) - changed, unmatched=unmatched)


def segment_enqueue_refresh(segment: Segment) -> None:
    from .tasks import refresh_segment

    jobs.enqueue(
        refresh_segment,
        segment.pk,
        queue="default",
        job_id=f"segment-refresh-{segment.pk}",
    )


def segments_refresh_due(*, now: dt.datetime) -> int:
    """Tick task: dynamic segments whose periodic full refresh is due (windows slide,
    anniversaries come round; this also reconciles anything the incremental path
    missed)."""
    due = 0
    for segment in Segment.objects.filter(kind=Segment.Kind.DYNAMIC).only(
        "pk", "refresh_minutes", "last_refreshed_at"
    ):
        last = segment.last_refreshed_at
        if last is None or last <= now - dt.timedelta(minutes=segment.refresh_minutes):
            segment_enqueue_refresh(segment)
            due += 1
    return due


def memberships_move_to_contact(*, source_id: int, target_id: int) -> dict[str, int]:
    """CONTACTS_MERGED hook: memberships (and score awards) go to the survivor; where
    both were in a segment, the survivor's membership stands."""
    from .models import ScoreAward

    both = SegmentMembership.objects.filter(
        contact_id=target_id, exited_at__isnull=True
    ).values_list("segment_id", flat=True)
    SegmentMembership.objects.filter(
        contact_id=source_id, exited_at__isnull=True, segment_id__in=list(both)
    ).delete()
    moved = SegmentMembership.objects.filter(contact_id=source_id).update(
        contact_id=target_id
    )
    awards = ScoreAward.objects.filter(contact_id=source_id).update(
        contact_id=target_id
    )
    return {"memberships": moved, "score_awards": awards}
