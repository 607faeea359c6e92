"""Advancing an enrollment: the heart of Nudge, meant to be read in one sitting.

    claim the row (select_for_update skip_locked: one worker at a time)
    -> is the workflow running? is the enrollment due?
    -> loop: exit condition? goal? run the current step, log it,
             follow its outlet, or wait (resume_at / awaited event), or finish
    -> save, and schedule the resume of a wait with RQ's scheduler

Everything a step does is written in the same transaction as the enrollment's move, so
a worker killed half-way leaves the enrollment where it was, to be run again (steps are
idempotent: a send step's Message is unique per enrollment and step). The scheduler
tick finds due enrollments again if Redis forgets them.
"""

import datetime as dt
import logging

from django.db import DatabaseError, transaction

from apps.core import clock
from apps.events.models import Event
from apps.segments.conditions import describe, evaluate

from .models import Enrollment, Step, StepRun, Workflow
from .services import enqueue_advance, enrollment_finish
from .steps import Outcome, StepContext, step_type
from .steps.waits import event_satisfies, expected_key

logger = logging.getLogger(__name__)

# Steps one job runs for one enrollment before handing over to a new job: a long
# chain of instant steps must not hold a worker (or a row lock) for long.
MAX_STEPS_PER_JOB = 50


def enrollment_advance(*, enrollment_id: int) -> str:
    """Run an enrollment forward as far as it can go now; returns what happened."""
    now = clock.now()
    with transaction.atomic():
        enrollment = (
            Enrollment.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("workflow", "version", "contact", "current_step")
            .filter(pk=enrollment_id, status__in=Enrollment.RUNNING)
            .first()
        )
        if enrollment is None:
            return "finished or busy"
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
        enrollment._pending_runs = []
        outcome = _advance(enrollment, now, resuming)
        # One INSERT for the trace of every step this job ran.
        StepRun.objects.bulk_create(enrollment._pending_runs)
        return outcome


def _advance(enrollment: Enrollment, now, resuming: bool) -> str:
    """The step loop of enrollment_advance, on a claimed enrollment."""
    steps = version_steps(enrollment.version)
    settings = enrollment.version.definition
    for _ in range(MAX_STEPS_PER_JOB):
        ended = check_goal_and_exit(enrollment, settings, now)
        if ended:
            return ended
        step = enrollment.current_step
        if step is None:
            enrollment_finish(
                enrollment, Enrollment.Status.COMPLETED, "reached the end", now
            )
            return "completed"
        outcome = _run(enrollment, step, settings, now, resuming)
        resuming = False
        if outcome.finish:
            enrollment_finish(enrollment, outcome.finish, outcome.reason, now)
            return outcome.finish
        if outcome.outlet is None:
            _wait(enrollment, outcome, now)
            return "waiting"
        target = step.outlets.get(outcome.outlet, "")
        enrollment.current_step = steps.get(target) if target else None
        _clear_wait(enrollment)
    enrollment.last_advanced_at = now
    enrollment.save()
    enqueue_advance([enrollment.pk])  # more to do: continue in a fresh job
    return "continued"


_steps_by_version: dict[tuple, dict[str, Step]] = {}


def version_steps(version) -> dict[str, Step]:
    """A version's steps by key. Versions never change once saved, so each process
    loads a version's steps once. (The creation time is in the key because a version
    saved in a rolled-back simulation may free its id for reuse on SQLite.)"""
    key = (version.pk, version.created_at)
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
        raise  # the transaction is unusable: let the job fail and be retried
    except Exception as exc:
        # A step that raises fails this enrollment, visibly, instead of retrying
        # forever; the traceback goes to the log.
        logger.exception(
            "step failed", extra={"enrollment_id": enrollment.pk, "step": step.key}
        )
        outcome = Outcome(
            "error",
            outlet=None,
            finish=Enrollment.Status.FAILED,
            reason=f"{step.key} failed: {type(exc).__name__}: {exc}",
        )
    enrollment._pending_runs.append(
        StepRun(
            enrollment=enrollment,
            step=step,
            step_key=step.key,
            started_at=started,
            finished_at=clock.now(),
            outcome=outcome.outcome[:40],
            detail={
                **outcome.detail,
                "reason": outcome.reason,
                "step": kind.describe(step.config),
            },
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
    enrollment.save()
    if outcome.wait_until is not None:
        # RQ's scheduler wakes it; if Redis loses that, the tick finds it by resume_at.
        enqueue_advance([enrollment.pk], at=outcome.wait_until)


def _clear_wait(enrollment: Enrollment) -> None:
    enrollment.status = Enrollment.Status.ACTIVE
    enrollment.resume_at = None
    enrollment.awaiting_event = ""
    enrollment.awaiting_key = ""
    enrollment.resume_outlet = ""


def check_goal_and_exit(enrollment: Enrollment, settings: dict, now) -> str:
    """End the run if its exit condition holds or its goal is reached; the new status
    ("" if it goes on)."""
    exit_condition = settings.get("exit_condition")
    if exit_condition and evaluate(
        exit_condition, enrollment.contact, now=now, since=enrollment.entered_at
    ):
        enrollment_finish(
            enrollment,
            Enrollment.Status.EXITED,
            f"exit condition: {describe(exit_condition)}",
            now,
        )
        _log(enrollment, "exited", f"exit condition: {describe(exit_condition)}", now)
        return Enrollment.Status.EXITED
    reason = goal_reached(enrollment, settings, now)
    if reason:
        enrollment_finish(enrollment, Enrollment.Status.CONVERTED, reason, now)
        _log(enrollment, "converted", reason, now)
        return Enrollment.Status.CONVERTED
    return ""


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
    run = StepRun(
        enrollment=enrollment,
        step=enrollment.current_step,
        step_key=enrollment.current_step.key if enrollment.current_step else "(end)",
        started_at=now,
        finished_at=now,
        outcome=outcome,
        detail={"reason": reason},
    )
    pending = getattr(enrollment, "_pending_runs", None)
    if pending is not None:
        pending.append(run)  # written with the rest by enrollment_advance
    else:
        run.save()
