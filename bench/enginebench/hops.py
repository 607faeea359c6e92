"""(a) where a probe's time went, hop by hop, from the rows' timestamps."""

from __future__ import annotations

from typing import Any

from enginebench.config import PROBE_EVENT
from enginebench.load import dist_ms
from enginebench.records import Records
from enginebench.setup import Data


def hop_breakdown(data: Data, sent_at: dict[str, float], records: Records) -> dict:
    """Where each probe's time went, from the rows' timestamps (all clocks on this
    machine): HTTP response, received -> enrolled by the events job (it commits
    the enrollment with its work; events have no processed time of their own any
    more), -> send step started,
    step, -> message claimed by the email job, -> handed to the backend."""
    events, enrollments, runs, messages = _probe_rows(data, list(sent_at))
    hops: dict[str, list[float]] = {
        "send -> received by the app": [],
        "received -> enrolled (events job)": [],
        "enrolled -> send step starts": [],
        "send step (creates the message)": [],
        "step done -> email job claims it": [],
        "claimed -> handed to the backend": [],
    }
    names = list(hops)
    for enrollment_id, en in enrollments.items():
        ev = events[en["trigger_event_id"]]
        email = ev["contact__email"]
        run, msg = runs.get(enrollment_id), messages.get(enrollment_id)
        mail = records.mails.get(email)
        if not (run and msg and msg["claimed_at"] and mail):
            continue
        points = [
            sent_at[email],
            ev["received_at"].timestamp(),
            en["entered_at"].timestamp(),
            run["started_at"].timestamp(),
            run["finished_at"].timestamp(),
            msg["claimed_at"].timestamp(),
            mail[0],
        ]
        for name, a, b in zip(names, points, points[1:], strict=False):
            hops[name].append(b - a)
    return {name: dist_ms(values) for name, values in hops.items()}


def _probe_rows(
    data: Data, emails: list[str]
) -> tuple[dict[int, Any], dict[int, Any], dict[int, Any], dict[int, Any]]:
    """The probes' events (by id), their enrollments (by id), and those
    enrollments' step runs and messages (by enrollment id)."""
    from apps.campaigns.models import Message
    from apps.events.models import Event
    from apps.workflows.models import Enrollment, StepRun

    events = {
        e["pk"]: e
        for e in Event.objects.filter(
            name=PROBE_EVENT, contact__email__in=emails
        ).values("pk", "contact__email", "received_at")
    }
    enrollments = {
        row["pk"]: row
        for row in Enrollment.objects.filter(
            workflow_id=data.probe_workflow_id, trigger_event_id__in=list(events)
        ).values("pk", "trigger_event_id", "entered_at")
    }
    runs = {
        r["enrollment_id"]: r
        for r in StepRun.objects.filter(enrollment_id__in=list(enrollments)).values(
            "enrollment_id", "started_at", "finished_at"
        )
    }
    messages = {
        m["enrollment_id"]: m
        for m in Message.objects.filter(enrollment_id__in=list(enrollments)).values(
            "enrollment_id", "created_at", "claimed_at"
        )
    }
    return events, enrollments, runs, messages
