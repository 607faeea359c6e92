import datetime as dt

from django.db.models import Count, Min

from .models import Message


def queued_backlog(now: dt.datetime) -> tuple[int, dt.datetime | None]:
    row = Message.objects.filter(
        status=Message.Status.QUEUED, send_after__lte=now
    ).aggregate(count=Count("pk"), oldest=Min("send_after"))
    return row["count"], row["oldest"]


def uncertain_count() -> int:
    return Message.objects.filter(status=Message.Status.UNCERTAIN).count()
