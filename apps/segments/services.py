"""Writes for segments: membership (full and incremental), static lists."""

import csv
import datetime as dt
import io
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import IntegrityError, connection, transaction
from django.db.models import F

from apps.contacts.models import Contact
from apps.core import clock, jobs
from apps.events.models import Event
from apps.events.services import internal_source

from .conditions import check, evaluate_facts, load_facts, matching_sql, references
from .models import Segment, SegmentMembership, SegmentRefresh

logger = logging.getLogger(__name__)

SEGMENT_ENTERED = "segment_entered"
SEGMENT_EXITED = "segment_exited"
# Events for a refresh go in with bulk inserts of this many rows (~2 MB each).
EVENT_BATCH = 5_000


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
    """Re-evaluate one dynamic segment for a few contacts (the incremental path)."""
    now = now or clock.now()
    condition = check(segment.condition)
    refs = references(condition)
    ids = sorted(set(contact_ids))
    open_members = set(
        SegmentMembership.objects.filter(
            segment=segment, contact_id__in=ids, exited_at__isnull=True
        ).values_list("contact_id", flat=True)
    )
    changes = Changes()
    for contact in Contact.objects.filter(pk__in=ids):
        matches = evaluate_facts(condition, load_facts(contact, refs, now=now), now=now)
        if matches and contact.pk not in open_members:
            changes.entered.append(contact.pk)
        elif not matches and contact.pk in open_members:
            changes.exited.append(contact.pk)
    if changes.entered or changes.exited:
        _apply(segment, changes, now)
    return changes


def _apply(segment: Segment, changes: Changes, now: dt.datetime) -> None:
    with transaction.atomic():
        if changes.exited:
            SegmentMembership.objects.filter(
                segment=segment, contact_id__in=changes.exited, exited_at__isnull=True
            ).update(exited_at=now)
        if changes.entered:
            SegmentMembership.objects.bulk_create(
                [
                    SegmentMembership(segment=segment, contact_id=c, entered_at=now)
                    for c in changes.entered
                ],
                ignore_conflicts=True,  # a concurrent job opened it first: fine
            )
        # A running count: COUNT(*) over a big segment costs milliseconds per event.
        # The full refresh sets the exact number again.
        delta = len(changes.entered) - len(changes.exited)
        Segment.objects.filter(pk=segment.pk).update(
            member_count=F("member_count") + delta
        )
        _record_changes(segment, changes, now)


def _record_changes(segment: Segment, changes: Changes, now: dt.datetime) -> None:
    """segment_entered / segment_exited events: facts for workflows and timelines.

    Bulk-inserted and left for the tick's processing sweep, so a refresh that moves a
    million contacts does not enqueue a million jobs.
    """
    source = internal_source()
    stamp = now.isoformat()
    rows = [
        Event(
            contact_id=contact_id,
            source=source,
            type=Event.Type.TRACK,
            name=name,
            properties={"segment_id": segment.pk, "segment": segment.name},
            context={"library": {"name": "nudge"}},
            timestamp=now,
            received_at=now,
            message_id=f"seg:{segment.pk}:{name[8:]}:{contact_id}:{stamp}"[:100],
        )
        for name, ids in (
            (SEGMENT_ENTERED, changes.entered),
            (SEGMENT_EXITED, changes.exited),
        )
        for contact_id in ids
    ]
    if rows and len(rows) <= EVENT_BATCH:
        # Few changes (the usual case): insert them with their ids back, and process
        # them now, not at the next sweep.
        from apps.events.tasks import process_events

        try:
            with transaction.atomic():
                created = Event.objects.bulk_create(rows)
        except IntegrityError:  # the same change recorded already (a retried job)
            return
        jobs.enqueue(process_events, [e.pk for e in created], queue="events")
        return
    for start in range(0, len(rows), EVENT_BATCH):
        Event.objects.bulk_create(
            rows[start : start + EVENT_BATCH], ignore_conflicts=True
        )


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
        _apply(segment, changes, now)
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
        _apply(segment, changes, now)
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
