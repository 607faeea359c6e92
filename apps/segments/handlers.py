"""What segments do when events arrive (the EVENTS_INGESTED hook)."""

from django.db.models import Q

from apps.core import clock
from apps.core.cache import RowsCache
from apps.events.models import Event

from .conditions import Refs, references
from .models import Segment
from .scoring import SCORE_CHANGED, scores_apply
from .services import SEGMENT_ENTERED, SEGMENT_EXITED, segment_update_for_contacts

CONSENT_EVENTS = {
    "email_unsubscribed",
    "email_bounced",
    "email_complained",
    "email_subscribed",
}


def _dynamic_segments() -> dict[int, tuple[Segment, Refs]]:
    segments = {}
    for segment in Segment.objects.filter(kind=Segment.Kind.DYNAMIC):
        try:
            segments[segment.pk] = (segment, references(segment.condition))
        except (ValueError, KeyError, TypeError):
            continue  # an invalid stored condition matches nothing
    return segments


# What the index reads of a segment: a change to any of these, by any path, rebuilds
# it (member counts and refresh times change all the time and do not matter here).
# The timestamps tell a row apart from an earlier one with the same id (SQLite reuses
# the ids of rolled-back rows).
_index = RowsCache(
    model=Segment,
    columns=("name", "condition", "created_at", "updated_at"),
    where=Q(kind=Segment.Kind.DYNAMIC),
    build=_dynamic_segments,
)


def segment_index() -> dict[int, tuple[Segment, Refs]]:
    """Dynamic segments with what their conditions read; rebuilt when one changes."""
    return _index.get()


def _affected(event: Event, refs: Refs) -> bool:
    if event.name in refs.event_names or event.name in refs.changed_by:
        return True
    if event.name == "identify" and refs.attributes:
        return True
    if event.name in CONSENT_EVENTS and "email_consent" in refs.attributes:
        return True
    if event.name == SCORE_CHANGED and "score" in refs.attributes:
        return True
    if event.name in (SEGMENT_ENTERED, SEGMENT_EXITED):
        return (event.properties or {}).get("segment_id") in refs.segment_ids
    return False


def on_events_ingested(*, events: list[Event]) -> None:
    now = clock.now()
    scores_apply(events=events, now=now)
    index = segment_index()
    if not index:
        return
    todo: dict[int, set[int]] = {}
    for event in events:
        for segment_id, (_segment, refs) in index.items():
            if _affected(event, refs):
                todo.setdefault(segment_id, set()).add(event.contact_id)
    for segment_id, contact_ids in todo.items():
        segment_update_for_contacts(
            segment=index[segment_id][0], contact_ids=contact_ids, now=now
        )
