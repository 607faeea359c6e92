"""What segments do when events arrive (the EVENTS_INGESTED hook)."""

import threading
from dataclasses import dataclass

from django.db.models import Count, Max

from apps.core import clock
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


@dataclass
class _Index:
    signature: tuple
    segments: dict[int, tuple[Segment, Refs]]


_index: _Index | None = None
_lock = threading.Lock()


def segment_index() -> dict[int, tuple[Segment, Refs]]:
    """Dynamic segments with what their conditions read; rebuilt when one changes."""
    global _index
    signature = tuple(
        Segment.objects.filter(kind=Segment.Kind.DYNAMIC)
        .aggregate(n=Count("pk"), changed=Max("updated_at"))
        .values()
    )
    if _index is None or _index.signature != signature:
        segments = {}
        for segment in Segment.objects.filter(kind=Segment.Kind.DYNAMIC):
            try:
                segments[segment.pk] = (segment, references(segment.condition))
            except (ValueError, KeyError, TypeError):
                continue  # an invalid stored condition matches nothing
        with _lock:
            _index = _Index(signature=signature, segments=segments)
    return _index.segments


def _affected(event: Event, refs: Refs) -> bool:
    if event.name in refs.event_names:
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
