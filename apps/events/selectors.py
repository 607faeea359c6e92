import datetime as dt

from django.db.models import Count, Min

from .models import Event, PendingEvent


def unprocessed_backlog(now: dt.datetime) -> tuple[int, dt.datetime | None]:
    row = PendingEvent.objects.aggregate(count=Count("pk"), oldest=Min("received_at"))
    return row["count"], row["oldest"]


def event_names_seen(*, limit: int = 500) -> list[str]:
    return list(
        Event.objects.order_by().values_list("name", flat=True).distinct()[:limit]
    )


def is_pending(event_id: int) -> bool:
    """Whether the event waits to be processed (or tried again): a PendingEvent."""
    return PendingEvent.objects.filter(event_id=event_id).exists()
