"""Processing events: the job that runs the per-event work (segments, workflows),
its failures and dead letters, and the tick's re-enqueue of what it has not done."""

import datetime as dt
import logging
import traceback

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef

from apps.contacts.services import contacts_touch_last_seen
from apps.core import clock, hooks, jobs

from .models import Event, EventFailure

logger = logging.getLogger(__name__)


# -- processing ----------------------------------------------------------------------


def events_process(*, event_ids: list[int]) -> int:
    """Run the per-event work for these ids once; returns how many it processed.

    The rows are locked and marked in one transaction with the hooks' work (segments,
    workflows), so a worker killed half-way leaves them unprocessed for the tick to
    re-enqueue, and two workers never process the same event.

    All together first. If that fails, each event goes alone, in a savepoint of its
    own, so that one bad event does not hold back the others: the ones that fail
    are recorded (EventFailure), tried again later by the tick, and after
    NUDGE_EVENT_MAX_ATTEMPTS set aside (dead-lettered) until someone retries them.
    An error that is not an event's own (the database gone) still fails the job.
    """
    try:
        return _process_together(event_ids)
    except Exception:
        logger.warning(
            "processing %s events together failed; one at a time now",
            len(event_ids),
            exc_info=True,
        )
    return _process_one_at_a_time(event_ids)


def _claim(event_ids: list[int]) -> list[Event]:
    return list(
        Event.objects.select_for_update(skip_locked=True)
        .filter(pk__in=event_ids, processed_at__isnull=True)
        .order_by("pk")
    )


def _process_together(event_ids: list[int]) -> int:
    with transaction.atomic():
        events = _claim(event_ids)
        if events:
            _run(events)
            _mark_processed(events)
    return len(events)


def _process_one_at_a_time(event_ids: list[int]) -> int:
    with transaction.atomic():
        events = _claim(event_ids)
        done, failed = [], []
        for event in events:
            try:
                with transaction.atomic():
                    _run([event])
                done.append(event)
            except Exception as exc:
                logger.warning(
                    "processing event %s failed",
                    event.pk,
                    exc_info=True,
                    extra={"event_id": event.pk, "contact_id": event.contact_id},
                )
                failed.append((event, exc))
        _mark_processed(done)
        _record_failures(failed)
    return len(done)


def _run(events: list[Event]) -> None:
    """The per-event work: the contacts were seen then (before the hooks, which may
    read it), then segments and workflows through the hook."""
    last_seen: dict[int, dt.datetime] = {}
    for event in events:
        current = last_seen.get(event.contact_id)
        if current is None or event.timestamp > current:
            last_seen[event.contact_id] = event.timestamp
    contacts_touch_last_seen(seen=last_seen)
    hooks.run(hooks.EVENTS_INGESTED, events=events)


def _mark_processed(events: list[Event]) -> None:
    """Done, and any failures of theirs over."""
    if events:
        ids = [e.pk for e in events]
        Event.objects.filter(pk__in=ids).update(processed_at=clock.now())
        EventFailure.objects.filter(event_id__in=ids).delete()


# After a failed attempt, the wait before the next: long enough for a deploy or a
# failover to pass, short enough that what the event triggers is still timely.
RETRY_DELAYS = [dt.timedelta(minutes=1), dt.timedelta(minutes=10)]
# How much of a traceback a failure keeps.
ERROR_CHARS = 8000


def _record_failures(failed: list[tuple[Event, Exception]]) -> None:
    """One more failed attempt for each; past the limit, the event is set aside:
    marked processed so the tick no longer hands it out, its failure row says it
    is dead."""
    if not failed:
        return
    now = clock.now()
    max_attempts = settings.NUDGE_EVENT_MAX_ATTEMPTS
    known = EventFailure.objects.select_for_update().in_bulk(
        [event.pk for event, _exc in failed]
    )
    dead = []
    for event, exc in failed:
        failure = known.get(event.pk) or EventFailure(
            event_id=event.pk, first_failed_at=now
        )
        failure.attempts += 1
        failure.last_failed_at = now
        failure.error = "".join(traceback.format_exception(exc))[-ERROR_CHARS:]
        if failure.attempts >= max_attempts:
            failure.status, failure.retry_at = EventFailure.Status.DEAD, None
            dead.append(event.pk)
            logger.error(
                "event %s dead-lettered after %s attempts",
                event.pk,
                failure.attempts,
                extra={"event_id": event.pk, "contact_id": event.contact_id},
            )
        else:
            delay = RETRY_DELAYS[min(failure.attempts, len(RETRY_DELAYS)) - 1]
            failure.status, failure.retry_at = EventFailure.Status.FAILING, now + delay
        failure.save()
    Event.objects.filter(pk__in=dead).update(processed_at=now)


def events_retry(*, event_ids: list[int]) -> int:
    """Try these failed events again now (admin's retry); returns how many.

    A dead-lettered one goes back to the queue for one more attempt: if that fails
    too, it is set aside again. Failures of events deleted meanwhile are dropped.
    """
    from .tasks import process_events

    with transaction.atomic():
        failures = list(
            EventFailure.objects.select_for_update().filter(event_id__in=event_ids)
        )
        existing = set(
            Event.objects.filter(pk__in=[f.event_id for f in failures]).values_list(
                "pk", flat=True
            )
        )
        EventFailure.objects.filter(
            event_id__in=[f.event_id for f in failures if f.event_id not in existing]
        ).delete()
        ids = sorted(existing)
        if not ids:
            return 0
        Event.objects.filter(
            pk__in=[
                f.event_id for f in failures if f.status == EventFailure.Status.DEAD
            ]
        ).update(processed_at=None)
        EventFailure.objects.filter(event_id__in=ids).update(
            status=EventFailure.Status.FAILING, retry_at=None
        )
        jobs.enqueue(process_events, ids, queue="events")
    logger.info("%s failed events to be tried again", len(ids))
    return len(ids)


def dead_lettered_count() -> int:
    """/healthz: events set aside after failing too often."""
    return EventFailure.objects.filter(status=EventFailure.Status.DEAD).count()


# 500 ids keep a job's payload near 4 KB and its transaction short; 20 chunks a tick
# (10,000 events) drains any realistic backlog within a minute without flooding Redis.
REENQUEUE_CHUNK = 500
REENQUEUE_PER_TICK = 20 * REENQUEUE_CHUNK


def events_reenqueue_unprocessed(*, now: dt.datetime) -> int:
    """Tick task: hand unprocessed events that Redis lost, and failed ones due for
    another try, back to the workers."""
    from .tasks import process_events

    cutoff = now - dt.timedelta(seconds=settings.NUDGE_REENQUEUE_AFTER_SECONDS)
    # A failed event waits for its retry_at (a failure row lives only while its
    # event is unprocessed, so this probes a small table).
    retry_later = EventFailure.objects.filter(event_id=OuterRef("pk"), retry_at__gt=now)
    ids = list(
        Event.objects.filter(processed_at__isnull=True, received_at__lt=cutoff)
        .filter(~Exists(retry_later))
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
