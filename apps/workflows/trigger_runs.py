"""Time-based triggers (schedule, dates, inactivity): decided by the tick, enrolled
by jobs a chunk at a time.

    tick: time_triggers_due -> for each active time-triggered workflow not already
          running: is anything due? (TriggerType.plan: no contact read) -> a
          TriggerRun row and a job; and runs whose job was lost or kept waiting,
          handed over again (to the events queue)
    job:  trigger_run_advance (default queue) -> lock the run -> the next CHUNK
          contacts after its cursor (TriggerType.due_chunk) -> entry condition
          and re-entry rule for the whole chunk -> one INSERT -> cursor moved, in
          the same short transaction -> then, in the same job, the enrolled
          contacts' first steps and the next chunk's job

The tick's transaction stays small whatever the audience, so it never holds
contacts or starves the re-enqueueing the guarantees rely on. A chunk commits its
enrollments and its cursor together, so a killed worker or a flushed Redis costs a
chunk's work again, never a contact skipped or enrolled twice (the unique occurrence
per contact is the last line of defence).
"""

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction

from apps.core import clock, jobs
from apps.segments.conditions import matching_contacts

from .engine import enrollments_advance
from .models import Enrollment, TriggerRun, Workflow
from .services import reentry_blockers, workflow_status_held
from .triggers import TIME, trigger_of

logger = logging.getLogger(__name__)

# Contacts enrolled per job: one transaction of a few hundred milliseconds at most
# (5 advance jobs of 200), so 200,000 contacts are 200 jobs that other work can
# pass between.
CHUNK = 1_000
# A time trigger looks again at most this often.
LOOK_EVERY = dt.timedelta(minutes=1)
# Finished runs are kept this long, to answer "did Monday's newsletter go out?".
KEEP_FINISHED = dt.timedelta(days=7)
# Chunks (a chunk's job also runs the first steps of those it enrolled) go on the
# queue the workers take last: a big run uses their spare time, one worker at most.
QUEUE = "default"
# ... unless they are kept waiting: a run not moved for NUDGE_STALE_SECONDS (its job
# lost, or starved by a stream of events that keeps the workers busy) is handed to
# the events queue, where it takes its turn with them. Near the workers' capacity
# "default" alone held a run of 200,000 at 37,000 for good (bench/README.md).
LATE_QUEUE = "events"


def time_triggers_due(*, now: dt.datetime) -> int:
    """Tick task: start a run for each time trigger with something due, and hand
    runs whose job was lost back to the workers; how many runs it enqueued."""
    running = set(
        TriggerRun.objects.filter(status=TriggerRun.Status.RUNNING).values_list(
            "workflow_id", flat=True
        )
    )
    workflows = (
        Workflow.objects.filter(status=Workflow.Status.ACTIVE)
        .exclude(trigger_type="")
        .exclude(pk__in=running)
        .select_related("current_version")
    )
    started = 0
    for workflow in workflows:
        kind, config = trigger_of(workflow.current_version.definition)
        last = workflow.trigger_checked_at
        if kind.kind != TIME or (last and last > now - LOOK_EVERY):
            continue
        Workflow.objects.filter(pk=workflow.pk).update(trigger_checked_at=now)
        plan = kind.plan(config, now, last)
        if plan is not None:
            _run_start(workflow, plan, now=now, since=last)
            started += 1
    return started + _lost_runs_reenqueue(now)


def _run_start(workflow: Workflow, plan: dict, *, now, since) -> None:
    run = TriggerRun.objects.create(
        workflow=workflow,
        version=workflow.current_version,
        due_at=now,
        since=since,
        plan=plan,
        started_at=now,
        updated_at=now,
    )
    _enqueue_chunk(run)


def _lost_runs_reenqueue(now: dt.datetime) -> int:
    """Running runs not moved for NUDGE_STALE_SECONDS lost their job (or their
    workflow was paused: it goes on once resumed). Stamped, so a run is handed over
    once per stale period, not every tick."""
    stale = now - dt.timedelta(seconds=settings.NUDGE_STALE_SECONDS)
    lost = list(
        TriggerRun.objects.filter(
            status=TriggerRun.Status.RUNNING,
            updated_at__lte=stale,
            workflow__status=Workflow.Status.ACTIVE,
        )
    )
    if lost:
        TriggerRun.objects.filter(pk__in=[r.pk for r in lost]).update(updated_at=now)
    for run in lost:
        _enqueue_chunk(run, late=True)
    return len(lost)


def trigger_runs_expire(*, now: dt.datetime) -> int:
    """Tick task: forget finished runs after KEEP_FINISHED."""
    deleted, _ = TriggerRun.objects.filter(finished_at__lt=now - KEEP_FINISHED).delete()
    return deleted


def _enqueue_chunk(run: TriggerRun, *, late: bool = False) -> None:
    """The job of the run's next chunk, carrying the run's cursor: it works only if
    the run is still at that cursor (trigger_run_advance), so a run keeps one chain
    of jobs whatever was handed over. The cursor is in its id too, so the tick's
    hand-over of a chunk whose job is still waiting is a no-op; a late one has an
    id of its own, and takes the place of the one kept waiting on the default queue
    (if a worker took that one meanwhile, the second of the two to run finds the run
    moved on and does nothing)."""
    from .tasks import advance_trigger_run

    job_id = f"trigger-run-{run.pk}-{run.cursor}"
    if late:
        jobs.withdraw(job_id, queue=QUEUE)
    jobs.enqueue(
        advance_trigger_run,
        run.pk,
        run.cursor,
        queue=LATE_QUEUE if late else QUEUE,
        job_id=job_id + ("-late" if late else ""),
    )


def trigger_run_advance(*, run_id: int, cursor: int | None = None) -> int:
    """Enroll the run's next chunk of contacts, run their first steps, and queue
    the chunk after (or finish the run); how many it enrolled. ``cursor``: the one
    the job was queued for; None (a job queued before jobs carried it) takes the
    run where it is.

    All in this one job, one after the other: a run never has more than one job
    at a time, so it never holds more than one worker, and events always find
    another."""
    with transaction.atomic():
        run, status = _run_held(run_id)
        if run is None:
            return 0  # done or cancelled
        if cursor is not None and run.cursor != cursor:
            # Its chunk is done: this is the copy of a job the tick handed over,
            # and the other one moved the run on and queued the next. Queueing
            # one here too would give the run two jobs for the rest of its life.
            return 0
        if status != Workflow.Status.ACTIVE:
            return _held_or_cancelled(run, status)
        now = clock.now()
        kind, config = trigger_of(run.version.definition)
        due = kind.due_chunk(
            config, run.plan, run.due_at, after=run.cursor, limit=CHUNK
        )
        ids = _chunk_enroll(run, due, now)
        _chunk_done(run, due, len(ids), now)
    # Committed: a worker killed from here on leaves them active, and the tick's
    # enrollments_due hands them over (and this run, once stale).
    enrollments_advance(enrollment_ids=ids)
    if run.status == TriggerRun.Status.RUNNING:
        _enqueue_chunk(run)
    return len(ids)


def _run_held(run_id: int) -> tuple[TriggerRun | None, str]:
    """The run if it is still running, and its workflow's status: both held until
    the chunk commits, so a pause or an archive waits for the chunk, and a chunk
    after them sees it.

    The workflow first, FOR SHARE as every enrollment into it holds it, then the
    run's row alone: workflow_archive takes them in that order (so the two never
    deadlock), and locking the workflow and version rows FOR UPDATE with the run
    would wait for (or, skipping locked rows, give up on) any transaction enrolling
    into the workflow, and block the foreign-key checks of enrollments into the
    version. Another job holding the run is waited for, not skipped: it is doing
    this chunk (the cursor has moved when it commits, and this job stops) or is a
    copy whose chunk is done (and stops at once); skipping it would end the run's
    chain whenever that copy held it."""
    workflow_id = (
        TriggerRun.objects.filter(pk=run_id)
        .values_list("workflow_id", flat=True)
        .first()
    )
    if workflow_id is None:
        return None, ""
    status, _live_since = workflow_status_held(workflow_id=workflow_id)
    run = (
        TriggerRun.objects.select_for_update(of=("self",))
        .select_related("version", "workflow")
        .filter(pk=run_id, status=TriggerRun.Status.RUNNING)
        .first()
    )
    return run, status


def _held_or_cancelled(run: TriggerRun, status: str) -> int:
    """A paused workflow's run waits (the tick hands it over again once it is
    active); an archived one's ends."""
    if status == Workflow.Status.ARCHIVED:
        now = clock.now()
        run.status = TriggerRun.Status.CANCELLED
        run.updated_at = run.finished_at = now
        run.save(update_fields=["status", "updated_at", "finished_at"])
    return 0


def _chunk_done(run: TriggerRun, due: list, enrolled: int, now) -> None:
    if due:
        run.cursor = due[-1][0]
    run.enrolled += enrolled
    run.updated_at = now
    if len(due) < CHUNK:
        run.status = TriggerRun.Status.DONE
        run.finished_at = now
        logger.info(
            "trigger run done",
            extra={"workflow_id": run.workflow_id, "enrolled": run.enrolled},
        )
    run.save(
        update_fields=["cursor", "enrolled", "updated_at", "status", "finished_at"]
    )


def _chunk_enroll(
    run: TriggerRun, due: list[tuple[int, str]], now: dt.datetime
) -> list[int]:
    """Enroll the chunk's contacts that the entry condition and the re-entry rule
    let in and that this occurrence has not enrolled yet: one INSERT; their ids."""
    if not due:
        return []
    workflow, definition = run.workflow, run.version.definition
    ids = [contact_id for contact_id, _key in due]
    allowed = set(ids)
    entry = definition.get("entry_condition")
    if entry:
        allowed &= set(
            matching_contacts(entry, now=now)
            .filter(pk__in=ids)
            .values_list("pk", flat=True)
        )
    blockers = reentry_blockers(workflow, definition, now)
    if blockers is not None and allowed:
        allowed -= set(
            blockers.filter(contact_id__in=allowed).values_list("contact_id", flat=True)
        )
    # This occurrence is done for them (an earlier run, or this one before a
    # retry): never twice.
    done = set(
        Enrollment.objects.filter(
            workflow=workflow,
            contact_id__in=allowed,
            occurrence_key__in={key for _id, key in due},
        ).values_list("contact_id", "occurrence_key")
    )
    pairs = [pair for pair in due if pair[0] in allowed and pair not in done]
    first_step = run.version.steps.order_by("position").first()
    created = Enrollment.objects.bulk_create(
        Enrollment(
            workflow=workflow,
            version=run.version,
            contact_id=contact_id,
            current_step=first_step,
            entered_at=now,
            last_advanced_at=now,
            occurrence_key=key,
        )
        for contact_id, key in pairs
    )
    return [enrollment.pk for enrollment in created]
