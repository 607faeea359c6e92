import datetime as dt

from django.db.models import Count, Min

from .models import Event


def unprocessed_backlog(now: dt.datetime) -> tuple[int, dt.datetime | None]:
    row = Event.objects.filter(processed_at__isnull=True).aggregate(
        count=Count("pk"), oldest=Min("received_at")
    )
    return row["count"], row["oldest"]


def event_names_seen(*, limit: int = 500) -> list[str]:
    return list(
        Event.objects.order_by().values_list("name", flat=True).distinct()[:limit]
    )
