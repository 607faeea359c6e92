"""Workflows reacting to events (the EVENTS_INGESTED hook) and to time (tick tasks)."""

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings as django_settings
from django.db.models import Q

from apps.contacts.models import Contact
from apps.core import clock
from apps.core.cache import RowsCache

from .engine import check_goal_and_exit
from .models import (
    Enrollment,
    Step,
    TriggerDecision,
    WebhookDelivery,
    Workflow,
    WorkflowVersion,
)
from .services import enqueue_advance, enrollment_start
from .steps.waits import event_satisfies
from .triggers import event_refusal, trigger_of

logger = logging.getLogger(__name__)


@dataclass
class _Index:
    by_event: dict[str, list[Workflow]]
    goal_exit_events: dict[
        int, set[str]
    ]  # version id -> event names its goal/exit read


def _active_by_event() -> _Index:
    by_event: dict[str, list[Workflow]] = {}
    active = Workflow.objects.filter(status=Workflow.Status.ACTIVE).select_related(
        "current_version"
    )
    for workflow in active:
        if workflow.trigger_event:
            by_event.setdefault(workflow.trigger_event, []).append(workflow)
    return _Index(by_event=by_event, goal_exit_events={})


# What the index reads of a workflow. Activating, pausing or archiving adds or
# removes a row; a new version changes current_version (versions never change). The
# timestamps tell a row apart from an earlier one with the same ids (SQLite reuses
# the ids of rolled-back rows: a simulation's version, a test's workflow).
_index = RowsCache(
    model=Workflow,
    columns=(
        "current_version",
        "trigger_type",
        "trigger_event",
        "live_since",
        "created_at",
        "updated_at",
    ),
    where=Q(status=Workflow.Status.ACTIVE),
    build=_active_by_event,
)


def trigger_index() -> _Index:
    """Active event-triggered workflows by event name: not a scan of all workflows.
    Rebuilt when one changes, by whatever path (one cheap query per job)."""
    return _index.get()


def _goal_exit_events(index: _Index, version) -> set[str]:
    if version.pk not in index.goal_exit_events:
        from apps.segments.conditions import references

        names: set[str] = set()
        definition = version.definition
        goal = definition.get("goal") or {}
        if goal.get("event"):
            names.add(goal["event"])
        for condition in (goal.get("condition"), definition.get("exit_condition")):
            if condition:
                refs = references(condition)
                names |= refs.event_names | refs.changed_by
        index.goal_exit_events[version.pk] = names
    return index.goal_exit_events[version.pk]


def on_events_ingested(*, events) -> None:
    """New events: start runs, resume waits for them, end runs whose goal or exit
    they satisfy (a purchase during a wait converts at once, not at the timeout)."""
    index = trigger_index()
    to_advance = react_to_events(events, by_event=index.by_event, index=index)
    if to_advance:
        enqueue_advance(to_advance)


def react_to_events(
    events, *, by_event: dict, index: _Index, only_workflow=None
) -> list[int]:
    """The work of on_events_ingested; returns the enrollments to advance. The
    simulator calls it with its own workflow only."""
    now = clock.now()
    to_advance: list[int] = []
    running = _running_enrollments({e.contact_id for e in events}, only_workflow)
    for event in events:
        _react_in_runs(event, running, index, now, to_advance)
        _react_as_trigger(event, by_event.get(event.name, []), now, to_advance)
    return to_advance


def _running_enrollments(contact_ids: set[int], only_workflow) -> list[Enrollment]:
    """The running enrollments of every contact in the batch, with their version,
    contact, step and workflow.

    Each statement reads one table by one index: the ids by (contact, status), then
    the rows by id, then what they point at. One statement joining them all let the
    planner, on statistics from before a schedule enrolled thousands, walk every run
    of a workflow for each event (DESIGN.md: hot queries must not depend on fresh
    statistics); most events' contacts have no run, and cost the first one only."""
    running = Enrollment.objects.filter(
        contact_id__in=contact_ids, status__in=Enrollment.RUNNING
    )
    if only_workflow is not None:
        running = running.filter(workflow=only_workflow)
    ids = list(running.values_list("pk", flat=True))
    if not ids:
        return []
    enrollments = list(Enrollment.objects.filter(pk__in=ids))
    related = {
        "version": WorkflowVersion.objects.in_bulk({e.version_id for e in enrollments}),
        "contact": Contact.objects.in_bulk({e.contact_id for e in enrollments}),
        "workflow": Workflow.objects.in_bulk({e.workflow_id for e in enrollments}),
        "current_step": Step.objects.in_bulk(
            {e.current_step_id for e in enrollments if e.current_step_id}
        ),
    }
    for enrollment in enrollments:
        for name, rows in related.items():
            pk = getattr(enrollment, f"{name}_id")
            setattr(enrollment, name, rows.get(pk) if pk else None)
    return enrollments


def _react_in_runs(
    event, running: list[Enrollment], index: _Index, now, to_advance: list[int]
) -> None:
    """End the event's contact's runs whose goal or exit it satisfies; resume those
    waiting for it (appended to ``to_advance``)."""
    for enrollment in running:
        if enrollment.contact_id != event.contact_id or not enrollment.is_running:
            continue
        reads_it = event.name in _goal_exit_events(index, enrollment.version)
        if reads_it and check_goal_and_exit(
            enrollment, enrollment.version.definition, now
        ):
            continue
        if _resumes_wait(enrollment, event, now) and _resume(enrollment, now):
            to_advance.append(enrollment.pk)


def _resume(enrollment: Enrollment, now) -> bool:
    """Mark the wait as ended by its event; False if the run is no longer at that
    wait. The engine may have moved it on since it was loaded (timed out into a
    later plain wait, say): the update is pinned to the step and the awaited event
    it was loaded at, so this event never ends another wait."""
    return bool(
        Enrollment.objects.filter(
            pk=enrollment.pk,
            status=Enrollment.Status.WAITING,
            current_step_id=enrollment.current_step_id,
            awaiting_event=enrollment.awaiting_event,
            awaiting_key=enrollment.awaiting_key,
            resume_outlet="",
        ).update(resume_outlet="happened", resume_at=now)
    )


def _resumes_wait(enrollment: Enrollment, event, now) -> bool:
    """The enrollment waits for this event, the event happened after the run began,
    and it meets the wait's filters."""
    return (
        enrollment.status == Enrollment.Status.WAITING
        and enrollment.awaiting_event == event.name
        and event.timestamp >= enrollment.entered_at
        and event_satisfies(
            event.properties,
            enrollment.current_step.config,
            enrollment.awaiting_key or None,
            now,
        )
    )


def _react_as_trigger(
    event, workflows: list[Workflow], now, to_advance: list[int]
) -> None:
    """Enroll the event's contact in each workflow it triggers (appended to
    ``to_advance``); record why not where the trigger's filters do not match."""
    for workflow in workflows:
        kind, config = trigger_of(workflow.current_version.definition)
        why_not = event_refusal(config, event, live_since=workflow.live_since, now=now)
        fires = not why_not
        if fires:
            fires, why_not = kind.matches(config, event)
        if not fires:
            TriggerDecision.objects.create(
                workflow=workflow,
                contact_id=event.contact_id,
                event_id=event.pk,
                event_name=event.name,
                reason=why_not[:300],
                decided_at=now,
            )
            continue
        enrollment, _reason = enrollment_start(
            workflow=workflow,
            contact=event.contact,
            trigger_event=event,
            advance=False,
        )
        if enrollment is not None:
            to_advance.append(enrollment.pk)


# -- tick tasks -------------------------------------------------------------------------

# A due enrollment whose job should already have run gets this much grace first.
GRACE = dt.timedelta(seconds=2)
PER_TICK = 5_000


def _stale() -> dt.timedelta:
    """Running enrollments (and webhooks) untouched this long lost their job (worker
    killed, Redis flushed). Steps are idempotent, so a false alarm is safe."""
    return dt.timedelta(seconds=django_settings.NUDGE_STALE_SECONDS)


def enrollments_due(*, now: dt.datetime) -> int:
    """Tick task: re-enqueue enrollments that are due and not in flight.

    "Not in flight" is last_advanced_at: the engine stamps it on every move, and this
    task stamps what it hands over, so a backlog is not enqueued again every tick.
    """
    live = Q(workflow__status=Workflow.Status.ACTIVE) | Q(is_test=True)
    due = Enrollment.objects.filter(live, last_advanced_at__lte=now - _stale()).filter(
        Q(status=Enrollment.Status.ACTIVE)
        | Q(status=Enrollment.Status.WAITING, resume_at__lte=now - GRACE)
        | Q(status=Enrollment.Status.WAITING, resume_outlet__gt="")
    )
    ids = list(due.order_by("resume_at").values_list("pk", flat=True)[:PER_TICK])
    if ids:
        Enrollment.objects.filter(pk__in=ids).update(last_advanced_at=now)
        enqueue_advance(ids)
    return len(ids)


def webhooks_due(*, now: dt.datetime) -> int:
    from .steps.webhook import enqueue_delivery

    due = WebhookDelivery.objects.filter(
        status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now - _stale()
    )[:PER_TICK]
    count = 0
    for delivery in due:
        enqueue_delivery(delivery)
        count += 1
    return count
