"""Enrollments, step runs and messages written straight into the database, as the
engine would leave them: the report only reads them."""

import datetime as dt
import itertools

from apps.campaigns.models import EmailTemplate, Message
from apps.contacts.models import Contact
from apps.workflows.models import Enrollment, StepRun, Workflow

from ..conftest import START

S = Enrollment.Status
SPLIT_THEN_OFFER = dict(
    trigger={"type": "manual"},
    goal={"event": "order_completed"},
    steps=[
        {
            "key": "welcome",
            "type": "send_email",
            "config": {"template": "Welcome"},
            "next": {"next": "pause"},
        },
        {
            "key": "pause",
            "type": "wait",
            "config": {"duration": {"days": 1}},
            "next": {"next": "split"},
        },
        {
            "key": "split",
            "type": "split",
            "config": {
                "variants": [{"name": "A", "weight": 50}, {"name": "B", "weight": 50}],
                "holdout": 10,
            },
            "next": {"A": "offer-a", "B": "offer-b", "holdout": ""},
        },
        {"key": "offer-a", "type": "send_email", "config": {"template": "A"}},
        {"key": "offer-b", "type": "send_email", "config": {"template": "B"}},
    ],
)
AB_SEND = dict(
    trigger={"type": "manual"},
    steps=[
        {
            "key": "tips",
            "type": "send_email",
            "config": {
                "variants": [
                    {"template": "Tips", "weight": 1},
                    {"template": "Nudge", "weight": 1},
                ]
            },
        }
    ],
)
_emails = itertools.count()


def enroll(
    workflow: Workflow,
    *,
    status: str = S.COMPLETED,
    at: dt.datetime = START,
    step: str | None = None,
    reason: str = "",
    is_test: bool = False,
    version=None,
) -> Enrollment:
    version = version or workflow.current_version
    finished = status not in Enrollment.RUNNING
    return Enrollment.objects.create(
        workflow=workflow,
        version=version,
        contact=Contact.objects.create(email=f"c{next(_emails)}@example.com"),
        status=status,
        current_step=version.steps.get(key=step) if step else None,
        entered_at=at,
        finished_at=at if finished else None,
        converted_at=at if status == S.CONVERTED else None,
        exit_reason=reason,
        is_test=is_test,
    )


def ran(enrollment: Enrollment, key: str, outcome: str = "done", **detail) -> StepRun:
    step = enrollment.version.steps.get(key=key)
    return StepRun.objects.create(
        enrollment=enrollment,
        step=step,
        step_key=key,
        started_at=enrollment.entered_at,
        finished_at=enrollment.entered_at,
        outcome=outcome,
        detail={"reason": "test", **detail},
    )


def sent(enrollment: Enrollment, key: str, template: str = "Welcome", **fields):
    fields.setdefault("status", Message.Status.SENT)
    return Message.objects.create(
        contact=enrollment.contact,
        template=EmailTemplate.objects.get(name=template),
        enrollment_id=enrollment.pk,
        step_id=enrollment.version.steps.get(key=key).pk,
        is_test=enrollment.is_test,
        created_at=START,
        send_after=START,
        **fields,
    )


def through(workflow: Workflow, keys: list[str], **fields) -> Enrollment:
    enrollment = enroll(workflow, **fields)
    for key in keys:
        ran(enrollment, key)
    return enrollment
