import datetime as dt

from django.db.models import Count, Min

from apps.core import clock
from apps.core.hooks import MessageHold

from .models import Enrollment, TriggerRun, Workflow

# A message of a paused workflow is looked at again this often until it resumes.
PAUSED_RECHECK = dt.timedelta(minutes=5)


def due_backlog(now: dt.datetime) -> tuple[int, dt.datetime | None]:
    row = Enrollment.objects.filter(
        status=Enrollment.Status.WAITING,
        resume_at__lte=now,
        workflow__status=Workflow.Status.ACTIVE,
    ).aggregate(count=Count("pk"), oldest=Min("resume_at"))
    return row["count"], row["oldest"]


def trigger_runs_backlog(now: dt.datetime) -> tuple[int, dt.datetime | None]:
    """Time-trigger runs still enrolling, and when the oldest began."""
    row = TriggerRun.objects.filter(
        status=TriggerRun.Status.RUNNING, workflow__status=Workflow.Status.ACTIVE
    ).aggregate(count=Count("pk"), oldest=Min("started_at"))
    return row["count"], row["oldest"]


def message_may_go(*, message) -> MessageHold | None:
    """MESSAGE_MAY_GO hook: a workflow's email queued before its workflow was paused
    waits for the resume; one whose workflow was archived or deleted meanwhile is
    cancelled. (A run that ends by its goal or exit condition cancels its queued
    emails itself: engine.check_goal_and_exit. One that ends by a step, an exit or
    goal step after the send, meant the email to go.)"""
    if message.enrollment_id is None:
        return None
    row = (
        Enrollment.objects.filter(pk=message.enrollment_id)
        .values_list("is_test", "workflow__status")
        .first()
    )
    if row is None:
        return MessageHold("its workflow was deleted")
    is_test, workflow_status = row
    if is_test:
        return None  # a test run goes on while its workflow is paused
    if workflow_status == Workflow.Status.ARCHIVED:
        return MessageHold("its workflow was archived")
    if workflow_status == Workflow.Status.PAUSED:
        return MessageHold("its workflow is paused", until=clock.now() + PAUSED_RECHECK)
    return None
