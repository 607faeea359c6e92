"""Advancing enrollments: the heart of Nudge, meant to be read in one sitting.

    claim a job's enrollments (one select_for_update skip_locked: one worker at a time)
    -> for each: is the workflow running? is it due?
    -> loop: exit condition? goal? run the current step, log it,
             follow its outlet, or wait (resume_at / awaited event), or finish
    -> write the trace (one INSERT) and the moves (one UPDATE per set of equal
       changes), schedule the resumes of waits with RQ's scheduler, commit once

Everything a step does is written in the same transaction as the enrollment's move, so
a worker killed half-way leaves the enrollments where they were, to be run again
(steps are idempotent: a send step's Message is unique per enrollment and step). A
step that raises fails its own enrollment only; one that writes runs in a savepoint,
so it leaves none of its writes. If the database refuses a batch, the batch is rolled
back and its enrollments are advanced one transaction each, so one bad row holds no
other back. The scheduler tick finds due enrollments again if Redis forgets them.
"""

import datetime as dt
import json
import logging
from dataclasses import dataclass, field

from django.db import DatabaseError, transaction

from apps.campaigns.services import messages_cancel_queued
from apps.core import clock
from apps.events.models import Event
from apps.segments.conditions import describe, evaluate

from .models import Enrollment, Step, StepRun, Workflow, WorkflowVersion
from .services import enqueue_advance, enrollment_finish
from .simulated import workflows_as_live_here
from .steps import Outcome, StepContext, step_type
from .steps.waits import event_satisfies, expected_key

logger = logging.getLogger(__name__)

# Steps one job runs for one enrollment before handing over to a new job: a long
# chain of instant steps must not hold a worker (or a row lock) for long.
MAX_STEPS_PER_JOB = 50

# Enrollments claimed, run and committed together: a job's 200 ids (enqueue_advance)
# cost one claim, one INSERT of their trace, an UPDATE or two and one commit, instead
# of about eight statements each (bench/engine.py).
BATCH_SIZE = 200

# What advancing changes on an enrollment. Only these are written back, and only
# those that changed, so a concurrent change to another column is never undone.
MOVED_FIELDS = (
    "status",
    "current_step_id",
    "resume_at",
    "resume_outlet",
    "awaiting_event",
    "awaiting_key",
    "last_advanced_at",
    "finished_at",
    "exit_reason",
    "converted_at",
    "steps_taken",
)


@dataclass
class _Job:
    """What one transaction's advancing collects, to write at its end."""

    now: dt.datetime
    runs: list[StepRun] = field(default_factory=list)
    moved: list[tuple[Enrollment, tuple]] = field(default_factory=list)
    continued: list[int] = field(default_factory=list)
    resumes: dict[dt.datetime, list[int]] = field(default_factory=dict)
    # A step's description for its trace, once per job (it may read a segment's name).
    descriptions: dict[int, str] = field(default_factory=dict)


def enrollments_advance(*, enrollment_ids: list[int]) -> dict[str, int]:
    """Run enrollments forward as far as they can go now, BATCH_SIZE per transaction;
    returns {what happened: how many}."""
    outcomes: dict[str, int] = {}
    for start in range(0, len(enrollment_ids), BATCH_SIZE):
        chunk = enrollment_ids[start : start + BATCH_SIZE]
        try:
            results = _advance_batch(chunk)
        except DatabaseError:
            if len(chunk) == 1:
                raise
            logger.warning(
                "advancing a batch failed; advancing its enrollments one at a time",
                exc_info=True,
                extra={"enrollments": len(chunk)},
            )
            results = _advance_one_at_a_time(chunk)
        for outcome in results:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


def enrollment_advance(*, enrollment_id: int) -> str:
    """Run one enrollment forward as far as it can go now; returns what happened."""
    return _advance_batch([enrollment_id])[0]


def _advance_one_at_a_time(enrollment_ids: list[int]) -> list[str]:
    """One transaction per enrollment, so one the database refuses fails alone. The
    first error is raised once the others are done: the job fails and is retried, and
    the retry finds nothing to do for those already advanced."""
    results, error = [], None
    for enrollment_id in enrollment_ids:
        try:
            results += _advance_batch([enrollment_id])
        except DatabaseError as exc:
            logger.exception(
                "advancing an enrollment failed", extra={"enrollment_id": enrollment_id}
            )
            error = error or exc
    if error is not None:
        raise error
    return results


def _advance_batch(enrollment_ids: list[int]) -> list[str]:
    """Claim, advance and write ``enrollment_ids`` in one transaction; what happened
    to each, in order."""
    job = _Job(now=clock.now())
    outcomes: dict[int, str] = {}
    with transaction.atomic():
        for enrollment in _claim(enrollment_ids):
            outcomes[enrollment.pk] = _advance_claimed(enrollment, job)
        _write(job)
    return [outcomes.get(pk, "finished or busy") for pk in enrollment_ids]


def _claim(enrollment_ids: list[int]) -> list[Enrollment]:
    """Lock the running ones no other worker holds (skip_locked: those are in hand),
    with their contact, workflow, version and current step."""
    # By primary key alone, the status checked here: a status filter in the query
    # lets a planner on stale statistics (a schedule just enrolled thousands) walk
    # the status index instead of fetching a few rows by key.
    enrollments = [
        enrollment
        for enrollment in Enrollment.objects.select_for_update(
            skip_locked=True, of=("self",)
        )
        .select_related("contact")
        .filter(pk__in=enrollment_ids)
        .order_by("pk")
        if enrollment.status in Enrollment.RUNNING
    ]
    if not enrollments:
        return []
    workflows = workflows_as_live_here(
        Workflow.objects.in_bulk({e.workflow_id for e in enrollments})
    )
    versions = WorkflowVersion.objects.in_bulk({e.version_id for e in enrollments})
    steps_by_id = {
        pk: {s.pk: s for s in version_steps(version).values()}
        for pk, version in versions.items()
    }
    # One Contact instance per contact: a step that changes it (and the instance)
    # is seen by the contact's later enrollments in the batch, as it would be by a
    # later transaction.
    contacts = {}
    for enrollment in enrollments:
        enrollment.workflow = workflows[enrollment.workflow_id]
        enrollment.version = versions[enrollment.version_id]
        enrollment.contact = contacts.setdefault(
            enrollment.contact_id, enrollment.contact
        )
        step = steps_by_id[enrollment.version_id].get(enrollment.current_step_id)
        if step is not None:
            enrollment.current_step = step
    return enrollments


def _advance_claimed(enrollment: Enrollment, job: _Job) -> str:
    now = job.now
    workflow = enrollment.workflow
    if workflow.status != Workflow.Status.ACTIVE and not enrollment.is_test:
        return f"held: workflow {workflow.status}"
    resuming = enrollment.status == Enrollment.Status.WAITING
    if (
        resuming
        and not enrollment.resume_outlet
        and (enrollment.resume_at or now) > now
    ):
        return "waiting"
    before = _moved_values(enrollment)
    enrollment._job = job
    outcome = _advance(enrollment, now, resuming)
    job.moved.append((enrollment, before))
    return outcome


def _advance(enrollment: Enrollment, now, resuming: bool) -> str:
    """The step loop, on a claimed enrollment."""
    job = enrollment._job
    steps = version_steps(enrollment.version)
    settings = enrollment.version.definition
    for _ in range(MAX_STEPS_PER_JOB):
        ended = check_goal_and_exit(enrollment, settings, now)
        if ended:
            return ended
        step = enrollment.current_step
        if step is None:
            enrollment_finish(
                enrollment,
                Enrollment.Status.COMPLETED,
                "reached the end",
                now,
                save=False,
            )
            return "completed"
        outcome = _run(enrollment, step, settings, now, resuming)
        resuming = False
        if outcome.finish:
            enrollment_finish(
                enrollment, outcome.finish, outcome.reason, now, save=False
            )
            return outcome.finish
        if outcome.outlet is None:
            _wait(enrollment, outcome, now)
            return "waiting"
        target = step.outlets.get(outcome.outlet, "")
        enrollment.current_step = steps.get(target) if target else None
        enrollment.steps_taken += 1
        _clear_wait(enrollment)
    enrollment.last_advanced_at = now
    job.continued.append(enrollment.pk)  # more to do: continue in a fresh job
    return "continued"


_steps_by_version: dict[tuple, dict[str, Step]] = {}


def version_steps(version) -> dict[str, Step]:
    """A version's steps by key. Versions never change once saved, so each process
    loads a version's steps once. (The workflow, creation time and definition are in
    the key because a version saved in a rolled-back transaction, a simulation's or a
    test's, frees its id for reuse on SQLite, possibly at the same frozen time.)"""
    key = (
        version.pk,
        version.workflow_id,
        version.created_at,
        json.dumps(version.definition, sort_keys=True),
    )
    steps = _steps_by_version.get(key)
    if steps is None:
        if len(_steps_by_version) > 1000:
            _steps_by_version.clear()
        steps = {s.key: s for s in Step.objects.filter(version_id=version.pk)}
        _steps_by_version[key] = steps
    return steps


def _run(
    enrollment: Enrollment, step: Step, settings: dict, now, resuming: bool
) -> Outcome:
    job = enrollment._job
    started = clock.now()
    kind = step_type(step.type)
    context = StepContext(
        enrollment=enrollment,
        step=step,
        contact=enrollment.contact,
        settings=settings,
        now=now,
        resuming=resuming,
    )
    try:
        if kind.writes:
            # A savepoint, so a step that fails half-way leaves none of its writes.
            with transaction.atomic():
                outcome = kind.resume(context) if resuming else kind.run(context)
        else:
            outcome = kind.resume(context) if resuming else kind.run(context)
    except DatabaseError:
        raise  # the transaction is unusable: roll back, advance one at a time
    except Exception as exc:
        # A step that raises fails this enrollment, visibly, instead of retrying
        # forever; the traceback goes to the log.
        logger.exception(
            "step failed", extra={"enrollment_id": enrollment.pk, "step": step.key}
        )
        if kind.writes:
            # Its writes were rolled back; the shared contact instance may still
            # hold what it set, which the contact's other enrollments must not see.
            enrollment.contact.refresh_from_db()
        outcome = Outcome(
            "error",
            outlet=None,
            finish=Enrollment.Status.FAILED,
            reason=f"{step.key} failed: {type(exc).__name__}: {exc}",
        )
    description = job.descriptions.get(step.pk)
    if description is None:
        description = job.descriptions[step.pk] = kind.describe(step.config)
    job.runs.append(
        StepRun(
            enrollment_id=enrollment.pk,
            step_id=step.pk,
            step_key=step.key,
            started_at=started,
            finished_at=clock.now(),
            outcome=outcome.outcome[:40],
            detail={**outcome.detail, "reason": outcome.reason, "step": description},
        )
    )
    return outcome


def _wait(enrollment: Enrollment, outcome: Outcome, now) -> None:
    enrollment.status = Enrollment.Status.WAITING
    enrollment.resume_at = outcome.wait_until
    enrollment.awaiting_event = outcome.await_event
    enrollment.awaiting_key = outcome.await_key
    enrollment.resume_outlet = ""
    enrollment.last_advanced_at = now
    if outcome.wait_until is not None:
        # RQ's scheduler wakes it; if Redis loses that, the tick finds it by resume_at.
        enrollment._job.resumes.setdefault(outcome.wait_until, []).append(enrollment.pk)


def _clear_wait(enrollment: Enrollment) -> None:
    enrollment.status = Enrollment.Status.ACTIVE
    enrollment.resume_at = None
    enrollment.awaiting_event = ""
    enrollment.awaiting_key = ""
    enrollment.resume_outlet = ""


def _moved_values(enrollment: Enrollment) -> tuple:
    return tuple(getattr(enrollment, name) for name in MOVED_FIELDS)


def _write(job: _Job) -> None:
    """The batch's trace in one INSERT, its moves in one UPDATE per set of equal
    changes (a batch that ran the same steps at the same time changes the same), and
    the jobs that continue it, enqueued when it commits."""
    StepRun.objects.bulk_create(job.runs)
    groups: dict[tuple, list[int]] = {}
    for enrollment, before in job.moved:
        changes = tuple(
            (name, new)
            for name, old, new in zip(
                MOVED_FIELDS, before, _moved_values(enrollment), strict=True
            )
            if new != old
        )
        if changes:
            groups.setdefault(changes, []).append(enrollment.pk)
    for changes, pks in groups.items():
        Enrollment.objects.filter(pk__in=pks).update(**dict(changes))
    if job.continued:
        enqueue_advance(job.continued)
    for at, pks in job.resumes.items():
        enqueue_advance(pks, at=at)


def check_goal_and_exit(enrollment: Enrollment, settings: dict, now) -> str:
    """End the run if its exit condition holds or its goal is reached; the new status
    ("" if it goes on). Outside the engine (an event's handler), it saves at once."""
    save = getattr(enrollment, "_job", None) is None
    exit_condition = settings.get("exit_condition")
    if exit_condition and evaluate(
        exit_condition, enrollment.contact, now=now, since=enrollment.entered_at
    ):
        status, outcome = Enrollment.Status.EXITED, "exited"
        reason = f"exit condition: {describe(exit_condition)}"
    else:
        status, outcome = Enrollment.Status.CONVERTED, "converted"
        reason = goal_reached(enrollment, settings, now)
        if not reason:
            return ""
    # Outside the engine the row is not locked and may have moved on since it was
    # read: enrollment_finish ends it only if it is still running, and writes only
    # the ending's fields.
    if not enrollment_finish(enrollment, status, reason, now, save=save):
        return ""
    # What the run queued and has not gone yet is no longer wanted.
    messages_cancel_queued(
        enrollment_id=enrollment.pk, reason=f"the run ended: {reason}"
    )
    _log(enrollment, outcome, reason, now)
    return status


def goal_reached(enrollment: Enrollment, settings: dict, now) -> str:
    goal = settings.get("goal")
    if not goal:
        return ""
    window = goal.get("within_days")
    deadline = enrollment.entered_at + dt.timedelta(days=window) if window else None
    if goal.get("event"):
        key = expected_key(enrollment, goal)
        rows = Event.objects.filter(
            contact_id=enrollment.contact_id,
            name=goal["event"],
            timestamp__gte=enrollment.entered_at,
        )
        if deadline:
            rows = rows.filter(timestamp__lte=deadline)
        for properties, timestamp in rows.values_list("properties", "timestamp"):
            if event_satisfies(properties, goal, key, now):
                same = f" (same {goal['match_key']} {key})" if key else ""
                return f"goal: {goal['event']}{same} at {timestamp:%Y-%m-%d %H:%M}"
        return ""
    if deadline and now > deadline:
        return ""
    if evaluate(
        goal["condition"], enrollment.contact, now=now, since=enrollment.entered_at
    ):
        return f"goal: {describe(goal['condition'])}"
    return ""


def _log(enrollment: Enrollment, outcome: str, reason: str, now) -> None:
    step = enrollment.current_step
    run = StepRun(
        enrollment_id=enrollment.pk,
        step=step,
        step_key=step.key if step else "(end)",
        started_at=now,
        finished_at=now,
        outcome=outcome,
        detail={"reason": reason},
    )
    job = getattr(enrollment, "_job", None)
    if job is not None:
        job.runs.append(run)  # written with the rest of the batch
    else:
        run.save()
