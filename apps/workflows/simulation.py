"""Simulate a workflow for one contact and a list of timed events, before going live.

The real engine runs, on a virtual clock (this thread only), inside a transaction that
is always rolled back: the path shown is the path the engine would take, and nothing
is sent, enrolled or changed. Emails and webhooks are enqueued after commit, and the
commit never comes. The workflow's own row is never written (it is live, or an edit
of it is, in this thread's memory: apps.workflows.simulated), so live work
enrolling into it does not wait for a simulation.

Segment membership and lead scores are not recomputed during a simulation.
"""

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from apps.campaigns.models import Message
from apps.contacts.models import Contact
from apps.core import clock
from apps.events.models import Event
from apps.events.services import internal_source

from .engine import enrollment_advance
from .handlers import _Index, react_to_events
from .models import Enrollment, StepRun, TriggerDecision, Workflow
from .services import enrollment_start, workflow_version_create
from .simulated import workflow_simulated_live
from .triggers import EVENT, trigger_of

# A simulation follows waits at most this far past its last event.
HORIZON = dt.timedelta(days=60)
MAX_ADVANCES = 500


@dataclass(frozen=True)
class SimulatedEvent:
    at: dt.datetime
    name: str
    properties: dict = field(default_factory=dict)


@dataclass
class Line:
    at: dt.datetime
    kind: str  # event | enrolled | not enrolled | step | email | finished | note
    text: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Simulation:
    lines: list[Line]
    status: str  # how the (last) run ended: completed / converted / waiting / ...


class _Rollback(Exception):
    pass


def simulate(
    *,
    workflow: Workflow,
    events: list[SimulatedEvent],
    contact: Contact | None = None,
    traits: dict | None = None,
    start: dt.datetime | None = None,
    definition: dict | None = None,
) -> Simulation:
    """The path ``contact`` (or one described by ``traits``) would take."""
    timeline = sorted(events, key=lambda e: e.at)
    start = start or (timeline[0].at if timeline else clock.now())
    result = Simulation(lines=[], status="not enrolled")
    try:
        with transaction.atomic(), clock.virtual(start):
            # Its own instance, at the simulated version, live from the start: in
            # memory only, as workers enrolling into the workflow hold its row.
            workflow = Workflow.objects.select_related("current_version").get(
                pk=workflow.pk
            )
            if definition is not None:
                workflow_version_create(workflow=workflow, definition=definition)
            with workflow_simulated_live(workflow=workflow, since=start):
                _run(workflow, timeline, contact, traits or {}, start, result)
            raise _Rollback
    except _Rollback:
        pass
    result.lines.sort(key=lambda line: line.at)
    return result


def _run(workflow, timeline, contact, traits, start, result: Simulation) -> None:
    if contact is None:
        contact = Contact.objects.create(
            email=traits.get("email") or "simulated@example.com",
            first_name=traits.get("first_name", ""),
            timezone=traits.get("timezone", ""),
            attributes=traits.get("attributes") or {},
            score=traits.get("score", 0),
        )
    kind, _config = trigger_of(workflow.current_version.definition)
    index = _Index(by_event={}, goal_exit_events={})
    if kind.kind == EVENT:
        index.by_event = {workflow.trigger_event: [workflow]}
    else:
        enrollment, reason = enrollment_start(
            workflow=workflow, contact=contact, advance=False
        )
        note = f"{kind.describe(_config)}: assumed to fire at the start"
        result.lines.append(Line(start, "note", note))
        if enrollment is None:
            result.lines.append(Line(start, "not enrolled", reason))
    source = internal_source()
    ends = (timeline[-1].at if timeline else start) + HORIZON
    for event in timeline:
        _advance_until(workflow, contact, event.at, result)
        clock.set_virtual(event.at)
        row = Event.objects.create(
            contact=contact,
            source=source,
            name=event.name,
            properties=event.properties,
            timestamp=event.at,
            received_at=event.at,
            message_id=f"sim-{uuid.uuid4()}",
        )
        result.lines.append(
            Line(event.at, "event", event.name, {"properties": event.properties})
        )
        for enrollment_id in react_to_events(
            [row], by_event=index.by_event, index=index, only_workflow=workflow
        ):
            enrollment_advance(enrollment_id=enrollment_id)
    _advance_until(workflow, contact, ends, result)
    _collect(workflow, contact, result)


def _advance_until(workflow, contact, until: dt.datetime, result: Simulation) -> None:
    """Run whatever becomes due before ``until``, jumping the clock from wait to wait."""
    for _ in range(MAX_ADVANCES):
        running = Enrollment.objects.filter(
            workflow=workflow, contact=contact, status__in=Enrollment.RUNNING
        )
        ready = running.filter(status=Enrollment.Status.ACTIVE).first()
        if ready is not None:
            enrollment_advance(enrollment_id=ready.pk)
            continue
        due = running.filter(resume_at__lte=until).order_by("resume_at").first()
        if due is None:
            return
        clock.set_virtual(max(due.resume_at, clock.now()))
        enrollment_advance(enrollment_id=due.pk)


def _collect(workflow, contact, result: Simulation) -> None:
    """Read back what the run recorded (before the rollback): the decisions not to
    enroll, then each run's steps, emails and end."""
    result.lines.extend(_decision_lines(workflow, contact))
    enrollments = Enrollment.objects.filter(
        workflow=workflow, contact=contact
    ).order_by("entered_at")
    for enrollment in enrollments:
        result.lines.append(
            Line(enrollment.entered_at, "enrolled", f"enrolled (run #{enrollment.pk})")
        )
        result.lines.extend(_step_lines(enrollment))
        result.lines.extend(_email_lines(enrollment))
        result.lines.append(_end_line(enrollment))
        result.status = enrollment.status


def _decision_lines(workflow, contact) -> list[Line]:
    return [
        Line(
            decision.decided_at,
            "not enrolled",
            decision.reason,
            {"event": decision.event_name},
        )
        for decision in TriggerDecision.objects.filter(
            workflow=workflow, contact=contact
        )
    ]


def _step_lines(enrollment: Enrollment) -> list[Line]:
    return [
        Line(
            run.started_at,
            "step",
            f"{run.detail.get('step') or run.step_key}: {run.outcome}",
            {
                "step": run.step_key,
                "outcome": run.outcome,
                "reason": run.detail.get("reason", ""),
            },
        )
        for run in StepRun.objects.filter(enrollment=enrollment).order_by(
            "started_at", "pk"
        )
    ]


def _email_lines(enrollment: Enrollment) -> list[Line]:
    return [
        Line(
            message.created_at,
            "email",
            f"would send “{message.template.name}”",
            {"step_id": message.step_id},
        )
        for message in Message.objects.filter(
            enrollment_id=enrollment.pk
        ).select_related("template")
    ]


def _end_line(enrollment: Enrollment) -> Line:
    """How the run ended, or what it is still waiting for."""
    if enrollment.is_running:
        waiting = (
            f"still waiting until {enrollment.resume_at:%Y-%m-%d %H:%M}"
            if enrollment.resume_at
            else "still waiting"
        )
        return Line(enrollment.resume_at or clock.now(), "finished", waiting)
    return Line(
        enrollment.finished_at,
        "finished",
        f"{enrollment.status}: {enrollment.exit_reason}",
    )


def parse_events(text: str, *, start: dt.datetime) -> list[SimulatedEvent]:
    """One event a line: ``+1h add_to_cart {"cart_id": "c1"}`` (offsets in m, h, d from
    the start) or ``2026-11-25 14:00 order_completed {...}``. Raises ValueError with
    the line number."""
    import json
    import re

    events = []
    offset = re.compile(r"^\+(\d+(?:\.\d+)?)([mhd])$")
    units = {"m": 60, "h": 3600, "d": 86400}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        head, _, props = line.partition("{")
        parts = head.split()
        try:
            properties = json.loads("{" + props) if props else {}
        except ValueError as exc:
            raise ValueError(
                f"line {number}: the properties are not JSON ({exc})"
            ) from None
        if parts and offset.match(parts[0]):
            amount, unit = offset.match(parts[0]).groups()
            at = start + dt.timedelta(seconds=float(amount) * units[unit])
            rest = parts[1:]
        elif len(parts) >= 3:
            try:
                at = dt.datetime.fromisoformat(f"{parts[0]} {parts[1]}").replace(
                    tzinfo=dt.UTC
                )
            except ValueError:
                raise ValueError(
                    f"line {number}: start with +30m / +2h / +1d or a date and time"
                ) from None
            rest = parts[2:]
        else:
            raise ValueError(f"line {number}: write “+1h event_name {{...}}”")
        if len(rest) != 1:
            raise ValueError(
                f"line {number}: one event name, then optional JSON properties"
            )
        events.append(SimulatedEvent(at=at, name=rest[0], properties=properties))
    return events
