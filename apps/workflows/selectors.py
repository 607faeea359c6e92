import datetime as dt

from django.db.models import Count, Min

from .models import Enrollment, Workflow


def due_backlog(now: dt.datetime) -> tuple[int, dt.datetime | None]:
    row = Enrollment.objects.filter(
        status=Enrollment.Status.WAITING,
        resume_at__lte=now,
        workflow__status=Workflow.Status.ACTIVE,
    ).aggregate(count=Count("pk"), oldest=Min("resume_at"))
    return row["count"], row["oldest"]
