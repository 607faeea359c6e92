"""Lead scoring: points per event, capped per period, with score_changed events."""

import datetime as dt
import uuid

import pytest

from apps.contacts.models import Contact
from apps.core import clock
from apps.events.ingestion import events_ingest
from apps.events.models import Event
from apps.events.schemas import Track
from apps.segments.models import ScoreAward, ScoringRule

pytestmark = pytest.mark.django_db


def _view(seconds):
    return Track(
        anonymousId="v1",
        event="page_engaged",
        properties={"seconds": seconds},
        messageId=str(uuid.uuid4()),
    )


def test_matching_events_add_points_and_record_score_changed(browser_source, run_jobs):
    ScoringRule.objects.create(
        name="Engaged reading",
        event_name="page_engaged",
        points=5,
        filters=[{"property": "seconds", "op": "gte", "value": 30}],
    )
    events_ingest(source=browser_source, messages=[_view(45), _view(10), _view(60)])
    run_jobs()
    contact = Contact.objects.get()
    assert contact.score == 10
    changes = Event.objects.filter(name="score_changed").order_by("pk")
    assert [e.properties["new"] for e in changes] == [5, 10]
    assert changes[0].properties == {
        "old": 0,
        "new": 5,
        "delta": 5,
        "rule": "Engaged reading",
    }


def test_points_stop_at_the_cap_for_the_period(browser_source, run_jobs):
    ScoringRule.objects.create(
        name="Views",
        event_name="page_engaged",
        points=4,
        cap_points=10,
        cap_period_days=7,
    )
    events_ingest(source=browser_source, messages=[_view(1) for _ in range(5)])
    run_jobs()
    assert Contact.objects.get().score == 10
    assert list(ScoreAward.objects.order_by("pk").values_list("points", flat=True)) == [
        4,
        4,
        2,
    ]
    # a week later the cap has room again
    with clock.frozen(clock.now() + dt.timedelta(days=8)):
        events_ingest(source=browser_source, messages=[_view(1)])
        run_jobs()
    assert Contact.objects.get().score == 14


def test_a_retried_job_never_scores_an_event_twice(browser_source, run_jobs):
    from apps.segments.scoring import score_award

    rule = ScoringRule.objects.create(name="Any", event_name="page_engaged", points=3)
    events_ingest(source=browser_source, messages=[_view(1)])
    run_jobs()
    event = Event.objects.get(name="page_engaged")
    assert score_award(rule=rule, event=event, now=clock.now()) == 0
    assert Contact.objects.get().score == 3


def test_a_score_threshold_segment_follows_the_score(browser_source, run_jobs):
    from apps.segments.models import Segment, SegmentMembership

    hot = Segment.objects.create(
        name="Hot leads", condition={"score": {"op": "gte", "value": 8}}
    )
    ScoringRule.objects.create(name="Any", event_name="page_engaged", points=5)
    events_ingest(source=browser_source, messages=[_view(1)])
    run_jobs()
    assert not SegmentMembership.objects.filter(segment=hot).exists()
    events_ingest(source=browser_source, messages=[_view(1)])
    run_jobs()
    assert (
        SegmentMembership.objects.filter(segment=hot, exited_at__isnull=True).count()
        == 1
    )
