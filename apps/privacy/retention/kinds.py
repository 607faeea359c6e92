"""What retention deletes: one Kind per kind of data, each a walk that finds the rows
past their time a batch at a time, and the delete of one batch.

What is never deleted, whatever its age:

- events not yet processed, events with a failure row (failing, or dead-lettered and
  waiting for someone to retry or discard them), and the events that started a
  running enrollment;
- messages and campaign recipients (reports count them), and so the anonymous
  contacts that have any, and those still in a running enrollment;
- the trace and the webhook deliveries of a running enrollment, and webhook deliveries
  still being retried.
"""

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet
from psycopg import sql

from apps.campaigns.models import CampaignRecipient, EspEvent, Message
from apps.campaigns.optin import unconfirmed_since
from apps.contacts.models import ConsentStatus, Contact
from apps.events.models import Event, EventFailure, PendingEvent
from apps.events.partitions import (
    add_months,
    events_partition_drop,
    is_partitioned,
    monthly_partitions,
)
from apps.segments.models import SegmentRefresh
from apps.workflows.models import Enrollment, StepRun, TriggerDecision, WebhookDelivery

# Rows per delete, each in its own transaction: a few tens of milliseconds on
# PostgreSQL, so the row locks and the WAL of one commit stay small and ingestion and
# the engine, writing the same tables, never queue behind it; large enough that a
# day's worth of a busy site's events is a few hundred statements, not a million.
BATCH = 2_000
# Contacts per transaction: each takes its events, identities, memberships and the
# rest with it (Django's cascade: a statement per related table), so far fewer.
CONTACT_BATCH = 100


@dataclass(frozen=True)
class Kind:
    # The key in RetentionRun.deleted and in the logs.
    name: str
    # The setting that says how many days this kind is kept (0: for ever).
    setting: str
    # cutoff -> batches of primary keys to delete, oldest first.
    batches: Callable[[dt.datetime], Iterator[list[int]]]
    # (primary keys, cutoff) -> how many rows of this kind it deleted; it runs in a
    # transaction of its own.
    delete: Callable[[list[int], dt.datetime], int]
    # cutoff -> rows deleted wholesale before the batches (events' old months).
    before: Callable[[dt.datetime], int] | None = None


def old_rows(
    rows: QuerySet,
    *,
    age: str,
    cutoff: dt.datetime,
    fields: tuple[str, ...] = (),
    deletable: Callable[[tuple], bool] = lambda row: True,
    size: int | None = None,
) -> Iterator[list[tuple]]:
    """``(pk, age, *fields)`` of ``rows`` older than ``cutoff`` (by ``age``) that are
    ``deletable``, a batch at a time, in primary key order.

    On these append-only tables ids grow with ``age``, so the walk stops at the first
    younger row rather than reading the rest of the table, and needs no index on
    ``age`` (every index costs each insert of a hot table). A row written a moment
    out of order (ids are drawn as rows are inserted) waits for the next day's run.
    The caller deletes each batch before asking for the next."""
    size = size or BATCH
    after = 0
    while True:
        page = list(
            rows.filter(pk__gt=after)
            .order_by("pk")
            .values_list("pk", age, *fields)[:size]
        )
        old = [row for row in page if row[1] < cutoff]
        batch = [row for row in old if deletable(row)]
        if batch:
            yield batch
        if len(page) < size or len(old) < len(page):
            return
        after = page[-1][0]


def walk_oldest_first(rows: QuerySet, **options) -> Iterator[list[int]]:
    """The primary keys of old_rows(rows, **options)."""
    for batch in old_rows(rows, **options):
        yield [row[0] for row in batch]


def _delete_by_pk(model) -> Callable[[list[int]], int]:
    def delete(ids: list[int], cutoff: dt.datetime) -> int:
        _total, per_model = model.objects.filter(pk__in=ids).delete()
        return per_model.get(model._meta.label, 0)

    return delete


# --- events -----------------------------------------------------------------------


def _unprocessed() -> Exists:
    return Exists(PendingEvent.objects.filter(event_id=OuterRef("pk")))


def _event_batches(cutoff: dt.datetime) -> Iterator[list[int]]:
    # By received_at (when Nudge got it), not timestamp (when the sender says it
    # happened): it grows with the id, so the walk needs no new index, and it is what
    # the table is partitioned by (whole months go first: _event_partitions_drop).
    for batch in old_rows(
        Event.objects.annotate(unprocessed=_unprocessed()),
        age="received_at",
        cutoff=cutoff,
        fields=("unprocessed", "contact_id"),
        deletable=lambda row: not row[2],
    ):
        ids = [row[0] for row in batch]
        kept = set(
            EventFailure.objects.filter(event_id__in=ids).values_list("pk", flat=True)
        )
        # Through the batch's contacts: (contact, status) is indexed, and no index
        # starts with trigger_event_id, so this reads a few rows per contact rather
        # than every running enrollment.
        kept |= set(
            Enrollment.objects.filter(
                contact_id__in={row[3] for row in batch},
                status__in=Enrollment.RUNNING,
                trigger_event_id__in=ids,
            ).values_list("trigger_event_id", flat=True)
        )
        ids = [pk for pk in ids if pk not in kept]
        if ids:
            yield ids


def _events_delete(ids: list[int], cutoff: dt.datetime) -> int:
    deleted, _ = Event.objects.filter(pk__in=ids).exclude(_unprocessed()).delete()
    return deleted


# The rows of a month partition that retention keeps (see the module's docstring).
_PARTITION_KEEPS = """
SELECT p.event_id FROM events_pendingevent p JOIN {part} e ON e.id = p.event_id
    WHERE p.received_at >= %s AND p.received_at < %s
UNION SELECT f.event_id FROM events_eventfailure f JOIN {part} e ON e.id = f.event_id
UNION SELECT n.trigger_event_id FROM workflows_enrollment n JOIN {part} e
      ON e.id = n.trigger_event_id WHERE n.status = ANY(%s)
LIMIT %s
"""
# A month keeping more rows than this is left to the row-by-row walk: the move
# (and the contact foreign key's checks at its commit) happens while the events
# table is locked, so it stays a few milliseconds.
MOVE_AT_MOST = 1_000


def _event_partitions_drop(cutoff: dt.datetime) -> int:
    """PostgreSQL: drop whole the months of events older than ``cutoff``, oldest
    first; how many rows went. The few rows a month keeps (unprocessed, failed, or
    the trigger of a running enrollment) move to the default partition as it is
    dropped, where the row-by-row walk deletes them once nothing keeps them. A drop
    is a catalog change (milliseconds, no scan, no dead rows to vacuum), where
    deleting a month row by row would take the day's run."""
    if not is_partitioned():
        return 0
    dropped = 0
    for name, month in sorted(monthly_partitions().items(), key=lambda kv: kv[1]):
        end = add_months(month, 1)
        if end > cutoff:
            break
        part = sql.Identifier(name)
        with connection.cursor() as cursor:
            cursor.execute(
                sql.SQL(_PARTITION_KEEPS).format(part=part),
                [month, end, list(Enrollment.RUNNING), MOVE_AT_MOST + 1],
            )
            keep = [event_id for (event_id,) in cursor.fetchall()]
            if len(keep) > MOVE_AT_MOST:
                continue
            # Read before the drop's lock: nothing is added to a past month.
            cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(part))
            rows = cursor.fetchone()[0]
        dropped += rows - events_partition_drop(name, month, keep=keep)
    return dropped


# --- workflows --------------------------------------------------------------------

FINISHED = [
    status for status in Enrollment.Status.values if status not in Enrollment.RUNNING
]


def _step_run_batches(cutoff: dt.datetime) -> Iterator[list[int]]:
    # The whole trace of an enrollment goes at once, when the enrollment has been
    # finished for the period: never half of a run's story. The walk stops at the
    # first step run younger than the cutoff (its enrollment finished after it).
    return walk_oldest_first(
        StepRun.objects.all(),
        age="finished_at",
        cutoff=cutoff,
        fields=("enrollment__status", "enrollment__finished_at"),
        deletable=lambda row: (
            row[2] in FINISHED and row[3] is not None and row[3] < cutoff
        ),
    )


def _decision_batches(cutoff: dt.datetime) -> Iterator[list[int]]:
    return walk_oldest_first(
        TriggerDecision.objects.all(), age="decided_at", cutoff=cutoff
    )


def _webhook_batches(cutoff: dt.datetime) -> Iterator[list[int]]:
    # A delivery is also what makes a webhook step post once per enrollment (a loop
    # back through the step finds it): it stays while its enrollment runs.
    finished = {WebhookDelivery.Status.DELIVERED, WebhookDelivery.Status.FAILED}
    return walk_oldest_first(
        WebhookDelivery.objects.all(),
        age="created_at",
        cutoff=cutoff,
        fields=("status", "enrollment__status"),
        deletable=lambda row: row[2] in finished and row[3] in FINISHED,
    )


# --- campaigns and segments -------------------------------------------------------


def _esp_event_batches(cutoff: dt.datetime) -> Iterator[list[int]]:
    return walk_oldest_first(EspEvent.objects.all(), age="received_at", cutoff=cutoff)


def _segment_refresh_batches(cutoff: dt.datetime) -> Iterator[list[int]]:
    return walk_oldest_first(
        SegmentRefresh.objects.all(), age="started_at", cutoff=cutoff
    )


# --- anonymous contacts -----------------------------------------------------------


def anonymous_unseen_since(cutoff: dt.datetime) -> QuerySet[Contact]:
    """Contacts that never identified (no email, no user id), not seen since
    ``cutoff`` (never seen: created before it), that nothing kept refers to: no
    message, no campaign recipient row, no running enrollment."""
    return Contact.objects.filter(
        # (an erased person's tombstone looks anonymous; reports count its rows)
        Q(email__isnull=True, external_id__isnull=True, erased_at__isnull=True),
        Q(last_seen_at__lt=cutoff)
        | Q(last_seen_at__isnull=True, created_at__lt=cutoff),
        ~Exists(Message.objects.filter(contact_id=OuterRef("pk"))),
        ~Exists(CampaignRecipient.objects.filter(contact_id=OuterRef("pk"))),
        ~Exists(
            Enrollment.objects.filter(
                contact_id=OuterRef("pk"), status__in=Enrollment.RUNNING
            )
        ),
        ~_has_events_in_work(),
    )


def _has_events_in_work() -> Exists:
    """The contact has an event not processed yet, or failing / dead-lettered:
    deleting the contact would take it with it (and its last_seen_at, set when
    events are processed, does not count it yet)."""
    events = Event.objects.filter(contact_id=OuterRef("pk"))
    return Exists(
        events.filter(
            Exists(PendingEvent.objects.filter(event_id=OuterRef("pk")))
            | Exists(EventFailure.objects.filter(event_id=OuterRef("pk")))
        )
    )


def _pk_batches(rows: QuerySet) -> Iterator[list[int]]:
    """The primary keys of ``rows``, CONTACT_BATCH at a time, in key order (the
    caller deletes each batch before asking for the next)."""
    after = 0
    while True:
        ids = list(
            rows.filter(pk__gt=after)
            .order_by("pk")
            .values_list("pk", flat=True)[:CONTACT_BATCH]
        )
        if ids:
            yield ids
        if len(ids) < CONTACT_BATCH:
            return
        after = ids[-1]


def _anonymous_batches(cutoff: dt.datetime) -> Iterator[list[int]]:
    return _pk_batches(anonymous_unseen_since(cutoff))


def _anonymous_delete(ids: list[int], cutoff: dt.datetime) -> int:
    """Delete the contacts that still qualify, locked first: one identified or seen
    since it was picked (its row locked by that write: skipped) stays. Ingestion that
    inserts an event for a contact locked here waits, then finds it gone, as it
    finds a contact merged away."""
    rows = anonymous_unseen_since(cutoff).filter(pk__in=ids)
    if connection.features.has_select_for_update_skip_locked:
        rows = rows.select_for_update(skip_locked=True, of=("self",))
    ids = list(rows.values_list("pk", flat=True))
    _total, per_model = Contact.objects.filter(pk__in=ids).delete()
    return per_model.get(Contact._meta.label, 0)


# --- double opt-in's unconfirmed contacts -------------------------------------------


def _unconfirmed(cutoff: dt.datetime) -> QuerySet[Contact]:
    """Unconfirmed since ``cutoff`` (optin.unconfirmed_since), and not seen since,
    with nothing in work: no event unprocessed or failing, no running enrollment."""
    return unconfirmed_since(cutoff).filter(
        Q(last_seen_at__isnull=True) | Q(last_seen_at__lt=cutoff),
        ~Exists(
            Enrollment.objects.filter(
                contact_id=OuterRef("pk"), status__in=Enrollment.RUNNING
            )
        ),
        ~_has_events_in_work(),
    )


def _unconfirmed_batches(cutoff: dt.datetime) -> Iterator[list[int]]:
    return _pk_batches(_unconfirmed(cutoff))


def _unconfirmed_delete(ids: list[int], cutoff: dt.datetime) -> int:
    """Those still pending (one who confirmed since it was picked stays)."""
    still = list(_unconfirmed(cutoff).filter(pk__in=ids).values_list("pk", flat=True))
    _total, per_model = Contact.objects.filter(
        pk__in=still, email_consent=ConsentStatus.PENDING
    ).delete()
    return per_model.get(Contact._meta.label, 0)


KINDS = [
    Kind(
        "events",
        "NUDGE_RETAIN_EVENTS_DAYS",
        _event_batches,
        _events_delete,
        before=_event_partitions_drop,
    ),
    Kind(
        "step_runs",
        "NUDGE_RETAIN_STEP_RUNS_DAYS",
        _step_run_batches,
        _delete_by_pk(StepRun),
    ),
    Kind(
        "trigger_decisions",
        "NUDGE_RETAIN_DECISIONS_DAYS",
        _decision_batches,
        _delete_by_pk(TriggerDecision),
    ),
    Kind(
        "esp_events",
        "NUDGE_RETAIN_ESP_EVENTS_DAYS",
        _esp_event_batches,
        _delete_by_pk(EspEvent),
    ),
    Kind(
        "segment_refreshes",
        "NUDGE_RETAIN_SEGMENT_REFRESHES_DAYS",
        _segment_refresh_batches,
        _delete_by_pk(SegmentRefresh),
    ),
    Kind(
        "webhook_deliveries",
        "NUDGE_RETAIN_WEBHOOK_DELIVERIES_DAYS",
        _webhook_batches,
        _delete_by_pk(WebhookDelivery),
    ),
    Kind(
        "anonymous_contacts",
        "NUDGE_RETAIN_ANONYMOUS_CONTACTS_DAYS",
        _anonymous_batches,
        _anonymous_delete,
    ),
    Kind(
        "unconfirmed_contacts",
        "NUDGE_DOUBLE_OPT_IN_PURGE_DAYS",
        _unconfirmed_batches,
        _unconfirmed_delete,
    ),
]
