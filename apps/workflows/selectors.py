import datetime as dt

from django.db.models import Count, Min

from .models import Enrollment, TriggerRun, Workflow


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
