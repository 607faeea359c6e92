"""Rows of each kind retention deletes, written straight into the database at a
given age, as ingestion and the engine would have left them."""

import datetime as dt
import itertools

from apps.campaigns.models import EspEvent
from apps.contacts.models import Contact, Identity
from apps.events.models import Event, PendingEvent
from apps.segments.models import Segment, SegmentRefresh
from apps.workflows.models import (
    Enrollment,
    StepRun,
    TriggerDecision,
    WebhookDelivery,
    Workflow,
    WorkflowVersion,
)

NOW = dt.datetime(2026, 11, 25, 3, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)
_ids = itertools.count()


def days_ago(days: int) -> dt.datetime:
    return NOW - dt.timedelta(days=days)


def just_outside(days: int) -> dt.datetime:
    return days_ago(days) - MINUTE


def just_inside(days: int) -> dt.datetime:
    return days_ago(days) + MINUTE


def a_contact(**fields) -> Contact:
    fields.setdefault("email", f"c{next(_ids)}@example.com")
    return Contact.objects.create(**fields)


def an_event(
    contact: Contact, received_at: dt.datetime, *, processed: bool = True, **fields
) -> Event:
    event = Event.objects.create(
        contact=contact,
        name="Product Viewed",
        timestamp=received_at,
        received_at=received_at,
        message_id=f"m-{next(_ids)}",
        **fields,
    )
    if not processed:
        PendingEvent.objects.create(event_id=event.pk, received_at=received_at)
    return event


def an_enrollment(contact: Contact, *, status: str, finished_at=None, **fields):
    workflow = Workflow.objects.create(name=f"Flow {next(_ids)}")
    version = WorkflowVersion.objects.create(
        workflow=workflow, number=1, definition={}, created_at=days_ago(800)
    )
    return Enrollment.objects.create(
        workflow=workflow,
        version=version,
        contact=contact,
        status=status,
        entered_at=days_ago(800),
        finished_at=finished_at,
        **fields,
    )


def a_step_run(enrollment: Enrollment, at: dt.datetime) -> StepRun:
    return StepRun.objects.create(
        enrollment=enrollment,
        step_key="wait",
        started_at=at,
        finished_at=at,
        outcome="done",
    )


def an_anonymous_contact(*, last_seen_at=None, created_at=None) -> Contact:
    contact = Contact.objects.create()
    Identity.objects.create(contact=contact, anonymous_id=f"anon-{next(_ids)}")
    # created_at is auto_now_add (the real time): set both as if seen back then.
    Contact.objects.filter(pk=contact.pk).update(
        last_seen_at=last_seen_at, created_at=created_at or last_seen_at or NOW
    )
    return contact


def exists(row) -> bool:
    return type(row).objects.filter(pk=row.pk).exists()


def a_decision(at: dt.datetime) -> TriggerDecision:
    contact = a_contact()
    workflow = an_enrollment(contact, status=Enrollment.Status.COMPLETED).workflow
    return TriggerDecision.objects.create(
        workflow=workflow, contact=contact, reason="already enrolled", decided_at=at
    )


def an_esp_event(at: dt.datetime) -> EspEvent:
    return EspEvent.objects.create(
        esp="postmark", event_id=f"e-{next(_ids)}", event_type="opened", received_at=at
    )


def a_segment_refresh(at: dt.datetime) -> SegmentRefresh:
    segment = Segment.objects.create(name=f"Segment {next(_ids)}", condition={})
    return SegmentRefresh.objects.create(
        segment=segment, kind="full", started_at=at, duration_ms=5
    )


def a_webhook_delivery(at: dt.datetime, status: str = "delivered") -> WebhookDelivery:
    enrollment = an_enrollment(
        a_contact(), status=Enrollment.Status.COMPLETED, finished_at=at
    )
    return WebhookDelivery.objects.create(
        enrollment=enrollment,
        url="https://example.com/hook",
        payload={"email": "ada@example.com"},
        status=status,
        next_attempt_at=at,
        created_at=at,
    )


def a_finished_trace(at: dt.datetime) -> StepRun:
    enrollment = an_enrollment(
        a_contact(), status=Enrollment.Status.COMPLETED, finished_at=at
    )
    return a_step_run(enrollment, at)
