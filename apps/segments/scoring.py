"""Lead scoring: events are worth points; contact.score is the sum, with caps."""

import datetime as dt
import logging

from django.db import IntegrityError, transaction
from django.db.models import F, Sum

from apps.contacts.models import Contact
from apps.events.models import Event
from apps.events.services import event_record

from .conditions import event_matches_filters
from .models import ScoreAward, ScoringRule

logger = logging.getLogger(__name__)

SCORE_CHANGED = "score_changed"


def active_rules_by_event() -> dict[str, list[ScoringRule]]:
    rules: dict[str, list[ScoringRule]] = {}
    for rule in ScoringRule.objects.filter(active=True):
        rules.setdefault(rule.event_name, []).append(rule)
    return rules


def scores_apply(*, events: list[Event], now: dt.datetime) -> int:
    """Award points for these events; returns how many awards were made."""
    rules = active_rules_by_event()
    if not rules:
        return 0
    awarded = 0
    for event in events:
        for rule in rules.get(event.name, []):
            if event_matches_filters(event.properties, rule.filters, now=now):
                awarded += bool(score_award(rule=rule, event=event, now=now))
    return awarded


def score_award(*, rule: ScoringRule, event: Event, now: dt.datetime) -> int:
    """Give ``rule.points`` for ``event`` (within the cap); the points given."""
    points = rule.points
    if rule.cap_points is not None and points > 0:
        since = now - dt.timedelta(days=rule.cap_period_days or 36500)
        given = (
            ScoreAward.objects.filter(
                contact_id=event.contact_id, rule=rule, awarded_at__gte=since
            ).aggregate(total=Sum("points"))["total"]
            or 0
        )
        points = max(0, min(points, rule.cap_points - given))
    if points == 0:
        return 0
    try:
        with transaction.atomic():
            ScoreAward.objects.create(
                contact_id=event.contact_id,
                rule=rule,
                points=points,
                event_id=event.pk,
                awarded_at=now,
            )
            Contact.objects.filter(pk=event.contact_id).update(
                score=F("score") + points
            )
    except IntegrityError:
        return 0  # this event was scored already (a retried job)
    new = Contact.objects.values_list("score", flat=True).get(pk=event.contact_id)
    event_record(
        contact_id=event.contact_id,
        name=SCORE_CHANGED,
        properties={
            "old": new - points,
            "new": new,
            "delta": points,
            "rule": rule.name,
        },
        dedupe_key=f"score:{rule.pk}:{event.pk}",
        timestamp=now,
    )
    logger.info(
        "score changed",
        extra={"contact_id": event.contact_id, "delta": points, "rule_id": rule.pk},
    )
    return points
