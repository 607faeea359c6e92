"""Processing events: the job that runs the per-event work (segments, workflows),
its failures and dead letters, and the tick's re-enqueue of what it has not done."""

import datetime as dt
import logging
import traceback
import zlib

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Exists, F, OuterRef

from apps.contacts.services import contacts_touch_last_seen
from apps.core import clock, hooks, jobs
from apps.core.db import is_transient

from .models import Event, EventBatch, EventFailure, PendingEvent
from .services import BY_CONTACT, internal_source

logger = logging.getLogger(__name__)

# Not the event's failure: they end the job and count nothing against the event
# themselves (an attempt already counted stays counted, see _attempt_claim).


# -- processing ----------------------------------------------------------------------


def events_process(*, event_ids: list[int], handed_out_before: bool = False) -> int:
    """Run the per-event work for these ids once; returns how many it processed.

    Their pending rows (PendingEvent) are locked and deleted in one transaction
    with the hooks' work (segments, workflows), so a worker killed half-way leaves
    them pending for the tick to re-enqueue, and two workers never process the same
    event. The event rows are only read.

    All together first, at no cost beyond the work: no attempt is counted. Events
    that failed before (they have an EventFailure), and all of them if together
    fails, go one at a time, each in transactions of its own, its attempt counted
    and committed before it starts (as delivery counts Message.attempts). So an
    attempt that never finishes (it killed the worker, or the job timed out) still
    counts; one bad event does not hold back the others; and after
    NUDGE_EVENT_MAX_ATTEMPTS the event is set aside (dead-lettered) until someone
    retries it.

    An event that kills its worker when taken together is found by the tick:
    ``handed_out_before`` (its re-enqueue) writes one EventBatch row for the
    events it takes together; a row that outlives its job sends them one at a
    time. A fresh job (ingestion's) writes nothing: the price is that a poison
    event kills a worker or two uncounted before it is tried alone.

    A job timeout and a transient database error (a deadlock, a lock or statement
    timeout, a lost connection) are not the event's fault: they propagate, so the
    job fails and RQ and the tick try again, and count nothing against the event
    beyond an attempt already started.
    """
    alone = _failed_before(event_ids)
    together = [pk for pk in event_ids if pk not in alone]
    processed = 0
    if together:
        done = _process_together(together, handed_out_before=handed_out_before)
        if done is None:
            alone.update(together)
        else:
            processed = done
    passing_trouble = None
    for event_id in sorted(alone):
        try:
            processed += _process_alone(event_id)
        except Exception as exc:
            if not is_transient(exc):
                raise
            # the others still get their turn; the job fails after them
            passing_trouble = passing_trouble or exc
    if passing_trouble is not None:
        raise passing_trouble
    return processed


def _failed_before(event_ids: list[int]) -> set[int]:
    # A probe of a small table (a row lives only while its event is unprocessed).
    return set(
        EventFailure.objects.filter(event_id__in=event_ids).values_list(
            "event_id", flat=True
        )
    )


def _claim(event_ids: list[int]) -> tuple[list[int], list[Event]]:
    """Lock the pending rows of these events that no other job holds; their ids
    and their events (fewer if an event was deleted meanwhile: its pending row
    goes with the others). The event rows are only read, never locked or written."""
    pending = list(
        PendingEvent.objects.select_for_update(skip_locked=True)
        .filter(event_id__in=event_ids)
        .order_by("event_id")
        .values_list("event_id", "received_at")
    )
    if not pending:
        return [], []
    ids = [event_id for event_id, _ in pending]
    times = [received_at for _, received_at in pending]
    # The times let PostgreSQL read only the partitions that hold them.
    events = Event.objects.filter(
        pk__in=ids, received_at__gte=min(times), received_at__lte=max(times)
    )
    return ids, list(events.order_by("pk"))


def _process_together(event_ids: list[int], *, handed_out_before: bool) -> int | None:
    """How many it processed, or None if they must go one at a time."""
    batch = None
    if handed_out_before:
        # Committed before the work, so that it outlives a job that dies on it.
        batch = EventBatch.objects.create(event_ids=event_ids, started_at=clock.now())
    try:
        with transaction.atomic():
            if batch is not None and not _batch_hold(batch):
                return None  # the tick took it for dead meanwhile (see _batches_dead)
            claimed, events = _claim(event_ids)
            if events:
                _run(events)
            _mark_processed(claimed)
            if batch is not None:
                batch.delete()
        return len(events)
    except jobs.JOB_INTERRUPTIONS:
        raise  # the batch row (if any) stays: the tick sends its events alone
    except Exception as exc:
        # A transient error (one event's lock wait, say) goes one at a time too, so
        # the others are not held back by it; alone, it counts nothing.
        logger.warning(
            "processing %s events together failed%s; one at a time now",
            len(event_ids),
            " (the database's passing trouble)" if is_transient(exc) else "",
            exc_info=True,
        )
        if batch is not None:
            batch.delete()
        return None


def _batch_hold(batch: EventBatch) -> bool:
    """Lock the job's batch row for its transaction; False if it is gone."""
    return EventBatch.objects.select_for_update().filter(pk=batch.pk).exists()


def _process_alone(event_id: int) -> int:
    """One counted attempt at one event; 1 if it processed it."""
    if not _attempt_claim(event_id):
        return 0
    try:
        with transaction.atomic():
            claimed, events = _claim([event_id])
            if events:
                _run(events)
            _mark_processed(claimed)
        return len(events)
    except jobs.JOB_INTERRUPTIONS:
        raise  # the attempt stays counted: it did not finish
    except Exception as exc:
        if is_transient(exc):
            _attempt_uncount(event_id)
            raise
        logger.warning(
            "processing event %s failed",
            event_id,
            exc_info=True,
            extra={"event_id": event_id},
        )
        _attempt_failed(event_id, exc)
        return 0


def _run(events: list[Event]) -> None:
    """The per-event work: the contacts were seen then (before the hooks, which may
    read it), then segments and workflows through the hook.

    Only what a contact did makes them seen: what they sent (ingested events)
    and what Nudge saw them do (a click, a choice on the preference page); not
    what Nudge did to them (an email sent, a segment entered, a score changed, a
    delivery or an open the ESP reports). A weekly newsletter must not keep every
    reader "seen" for ever, or no one would ever be inactive for a win-back."""
    internal = internal_source().pk
    last_seen: dict[int, dt.datetime] = {}
    for event in events:
        if event.source_id == internal and not (event.context or {}).get(BY_CONTACT):
            continue
        current = last_seen.get(event.contact_id)
        if current is None or event.timestamp > current:
            last_seen[event.contact_id] = event.timestamp
    contacts_touch_last_seen(seen=last_seen)
    hooks.run(hooks.EVENTS_INGESTED, events=events)


def _mark_processed(event_ids: list[int]) -> None:
    """Done (no longer pending), and any failures of theirs over."""
    if event_ids:
        PendingEvent.objects.filter(event_id__in=event_ids).delete()
        EventFailure.objects.filter(event_id__in=event_ids).delete()


# -- attempts and failures -------------------------------------------------------------

# How much of a traceback a failure keeps.
ERROR_CHARS = 8000
UNFINISHED = (
    "Attempt {attempts} did not finish: its worker died (killed, out of memory, a "
    "crash) or its job timed out."
)


def _retry_delay(attempts: int) -> dt.timedelta:
    """The wait after attempt ``attempts`` before the next."""
    delays = settings.NUDGE_EVENT_RETRY_SECONDS
    return dt.timedelta(seconds=delays[min(attempts, len(delays)) - 1])


def _attempt_claim(event_id: int) -> bool:
    """Count one more attempt at the event and commit it, before the attempt
    starts; False if it is not to be tried now.

    Not now: processed (or another job holds it), waiting for its retry, or just
    claimed by another job: retry_at, set here, keeps the others off it until the
    attempt could have failed, and spaces out the attempts of an event that kills
    its worker. An event whose last attempt never finished (still STARTED) with
    no attempts left is set aside instead of being tried again.
    """
    now = clock.now()
    with transaction.atomic():
        pending = (
            PendingEvent.objects.select_for_update(skip_locked=True)
            .filter(event_id=event_id)
            .first()
        )
        if pending is None:
            return False
        failure = EventFailure.objects.select_for_update().filter(pk=event_id).first()
        if failure is None:
            failure = EventFailure(event_id=event_id, first_failed_at=now)
        elif failure.retry_at is not None and failure.retry_at > now:
            return False
        elif failure.status == EventFailure.Status.STARTED:
            note = UNFINISHED.format(attempts=failure.attempts)
            failure.error = "\n\n".join([note, failure.error])[:ERROR_CHARS]
            if failure.attempts >= settings.NUDGE_EVENT_MAX_ATTEMPTS:
                _dead_letter(failure, pending=pending)
                return False
        failure.attempts += 1
        failure.status = EventFailure.Status.STARTED
        failure.last_failed_at = now
        failure.retry_at = now + _retry_delay(failure.attempts)
        failure.save()
    return True


def _attempt_failed(event_id: int, exc: Exception) -> None:
    """The attempt failed by the event's own fault: the next one later, or, with
    no attempts left, set aside."""
    now = clock.now()
    with transaction.atomic():
        failure = EventFailure.objects.select_for_update().filter(pk=event_id).first()
        if failure is None:
            return  # processed by another job meanwhile
        failure.last_failed_at = now
        failure.error = "".join(traceback.format_exception(exc))[-ERROR_CHARS:]
        if failure.attempts >= settings.NUDGE_EVENT_MAX_ATTEMPTS:
            _dead_letter(failure, pending=None)
            return
        failure.status = EventFailure.Status.FAILING
        failure.retry_at = now + _retry_delay(failure.attempts)
        failure.save()


def _attempt_uncount(event_id: int) -> None:
    """A transient database error is not the event's: take back the attempt it
    cost, and let it be tried again at once. If the database is gone, the attempt
    stays counted (so an outage costs an event at most one)."""
    try:
        with transaction.atomic():
            EventFailure.objects.filter(
                pk=event_id, status=EventFailure.Status.STARTED
            ).update(
                attempts=F("attempts") - 1,
                status=EventFailure.Status.FAILING,
                retry_at=None,
            )
            # it had not failed before: as it was, with no row
            EventFailure.objects.filter(pk=event_id, attempts=0, error="").delete()
    except DatabaseError:
        logger.warning(
            "could not take back the attempt at event %s",
            event_id,
            exc_info=True,
            extra={"event_id": event_id},
        )


def _dead_letter(failure: EventFailure, *, pending: PendingEvent | None) -> None:
    """Set the event aside: off the queue so the tick no longer hands it out, its
    failure row says it is dead."""
    failure.status, failure.retry_at = EventFailure.Status.DEAD, None
    failure.save()
    PendingEvent.objects.filter(event_id=failure.event_id).delete()
    event = Event.objects.filter(pk=failure.event_id)
    if pending is not None:
        event = event.filter(received_at=pending.received_at)  # one partition
    logger.error(
        "event %s dead-lettered after %s attempts",
        failure.event_id,
        failure.attempts,
        extra={
            "event_id": failure.event_id,
            "contact_id": event.values_list("contact_id", flat=True).first(),
        },
    )


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
        existing = dict(
            Event.objects.filter(pk__in=[f.event_id for f in failures]).values_list(
                "pk", "received_at"
            )
        )
        EventFailure.objects.filter(
            event_id__in=[f.event_id for f in failures if f.event_id not in existing]
        ).delete()
        ids = sorted(existing)
        if not ids:
            return 0
        # a dead one goes back on the queue
        PendingEvent.objects.bulk_create(
            [
                PendingEvent(event_id=f.event_id, received_at=existing[f.event_id])
                for f in failures
                if f.status == EventFailure.Status.DEAD and f.event_id in existing
            ],
            ignore_conflicts=True,
        )
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
    """Tick task: hand unprocessed events that Redis lost, that a dead job held, and
    failed ones due for another try, back to the workers."""
    from .tasks import process_events_again

    _batches_dead(now=now)
    cutoff = now - dt.timedelta(seconds=settings.NUDGE_REENQUEUE_AFTER_SECONDS)
    # A failed event waits for its retry_at (a failure row lives only while its
    # event is unprocessed, so this probes a small table).
    retry_later = EventFailure.objects.filter(
        event_id=OuterRef("event_id"), retry_at__gt=now
    )
    ids = list(
        PendingEvent.objects.filter(received_at__lt=cutoff)
        .filter(~Exists(retry_later))
        .order_by("received_at", "event_id")
        .values_list("event_id", flat=True)[:REENQUEUE_PER_TICK]
    )
    attempts = dict(
        EventFailure.objects.filter(event_id__in=ids).values_list("pk", "attempts")
    )
    for start in range(0, len(ids), REENQUEUE_CHUNK):
        chunk = ids[start : start + REENQUEUE_CHUNK]
        jobs.enqueue(
            process_events_again,
            chunk,
            queue="events",
            job_id=_reenqueue_job_id(chunk, attempts),
        )
    return len(ids)


def _reenqueue_job_id(chunk: list[int], attempts: dict[int, int]) -> str:
    """The same chunk in the same state gives the same job id, so a job still
    waiting in Redis is not enqueued a second time by the next tick. A job that
    died stays "started" in Redis until RQ gives it up, minutes later; but it
    changed the state it leaves (an attempt counted, a batch found dead), so the
    next one has an id of its own."""
    state = ",".join(f"{pk}:{attempts.get(pk, '-')}" for pk in chunk)
    return f"events-retry-{chunk[0]}-{zlib.crc32(state.encode()):08x}"


BATCH_DIED = (
    "It was in a batch of {count} events whose job did not finish (its worker died "
    "or it timed out); tried alone from now on."
)


def _batches_dead(*, now: dt.datetime) -> int:
    """Batches no job holds (see EventBatch): their job died. Their unprocessed
    events get a failure row with no attempt counted yet, so that they go one at a
    time from now on; returns how many."""
    dead = list(EventBatch.objects.select_for_update(skip_locked=True))
    if not dead:
        return 0
    ids = sorted({pk for batch in dead for pk in batch.event_ids})
    # skip those a live job holds: it will finish them, or leave a trace of its own
    unprocessed = list(
        PendingEvent.objects.select_for_update(skip_locked=True)
        .filter(event_id__in=ids)
        .values_list("event_id", flat=True)
    )
    note = BATCH_DIED.format(count=len(ids))
    EventFailure.objects.bulk_create(
        [
            EventFailure(
                event_id=pk, error=note, first_failed_at=now, last_failed_at=now
            )
            for pk in unprocessed
        ],
        ignore_conflicts=True,
    )
    EventBatch.objects.filter(pk__in=[batch.pk for batch in dead]).delete()
    logger.warning(
        "%s events of %s batches whose job died go one at a time",
        len(unprocessed),
        len(dead),
    )
    return len(unprocessed)
