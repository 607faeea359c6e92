"""Writes for workflows: going live, pausing, resuming, archiving.

Every change of status is one guarded UPDATE: it happens only from a status that
may take it, whatever the caller's copy of the workflow says. A copy read a while
ago (an admin page left open, a bulk action) cannot re-activate an archived
workflow whose runs were ended.
"""

from django.db import transaction

from apps.campaigns.services import messages_release_held
from apps.core import clock

from ..models import Enrollment, TriggerRun, Workflow
from .enrolling import enqueue_advance

Status = Workflow.Status

# The statuses each one may be reached from.
REACHABLE_FROM = {
    Status.ACTIVE: {Status.DRAFT, Status.PAUSED},
    Status.PAUSED: {Status.ACTIVE},
    Status.ARCHIVED: {Status.DRAFT, Status.ACTIVE, Status.PAUSED},
}
VERBS = {Status.ACTIVE: "activated", Status.PAUSED: "paused"}
VERBS[Status.ARCHIVED] = "archived"


class StatusError(ValueError):
    """The workflow's status (as stored now) does not allow the change."""


def _status_set(workflow: Workflow, status: str, **also) -> bool:
    """The one write of a workflow's status; False if it already had it. Workers'
    trigger indexes notice it by themselves (apps.core.cache); updated_at is kept
    true for people."""
    changed = Workflow.objects.filter(
        pk=workflow.pk, status__in=REACHABLE_FROM[status]
    ).update(status=status, updated_at=clock.now(), **also)
    if not changed:
        workflow.status = Workflow.objects.values_list("status", flat=True).get(
            pk=workflow.pk
        )
        if workflow.status == status:
            return False
        raise StatusError(
            f"“{workflow.name}” is {workflow.status}: it cannot be {VERBS[status]}"
        )
    workflow.status = status
    for name, value in also.items():
        setattr(workflow, name, value)
    return True


def workflow_activate(*, workflow: Workflow) -> None:
    """Go live (again, after a pause): from now on, events trigger it; events
    timestamped before now never will (apps.workflows.triggers.event_refusal)."""
    _status_set(workflow, Status.ACTIVE, live_since=clock.now())


def workflow_pause(*, workflow: Workflow) -> int:
    """Stop advancing; running enrollments hold where they are. Returns how many."""
    _status_set(workflow, Status.PAUSED)
    return workflow.enrollments.filter(status__in=Enrollment.RUNNING).count()


def workflow_resume(*, workflow: Workflow) -> int:
    """Continue: due enrollments are picked up by the next scheduler tick (or now),
    and the emails held while it was paused go. Returns how many runs go on."""
    workflow_activate(workflow=workflow)
    ids = list(
        workflow.enrollments.filter(status__in=Enrollment.RUNNING).values_list(
            "pk", flat=True
        )
    )
    enqueue_advance(ids)
    messages_release_held(enrollment_ids=workflow.enrollments.values("pk"))
    return len(ids)


@transaction.atomic
def workflow_archive(*, workflow: Workflow) -> int:
    """Retire the workflow: running enrollments exit with the reason."""
    _status_set(workflow, Status.ARCHIVED)
    now = clock.now()
    TriggerRun.objects.filter(
        workflow=workflow, status=TriggerRun.Status.RUNNING
    ).update(status=TriggerRun.Status.CANCELLED, updated_at=now, finished_at=now)
    return workflow.enrollments.filter(status__in=Enrollment.RUNNING).update(
        status=Enrollment.Status.EXITED,
        finished_at=now,
        exit_reason="workflow archived",
        resume_at=None,
        awaiting_event="",
    )
