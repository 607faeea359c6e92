"""Processing new events: once each, and never lost when Redis forgets a job."""

import datetime as dt
import uuid

import django_rq
import pytest

from apps.core import clock, hooks
from apps.core.scheduler import tick
from apps.events.ingestion import events_ingest
from apps.events.models import Event
from apps.events.schemas import Track
from apps.events.services import events_process

pytestmark = pytest.mark.django_db(transaction=True)


def _ingest(source, count=3, anonymous_id="anon-1"):
    messages = [
        Track(anonymousId=anonymous_id, event="viewed", messageId=str(uuid.uuid4()))
        for _ in range(count)
    ]
    return events_ingest(source=source, messages=messages)


def test_processing_twice_processes_each_event_once(browser_source):
    seen = []
    handler = lambda *, events: seen.extend(e.pk for e in events)  # noqa: E731
    hooks.register(hooks.EVENTS_INGESTED, handler)
    try:
        result = _ingest(browser_source)
        assert events_process(event_ids=result.event_ids) == 3
        assert events_process(event_ids=result.event_ids) == 0
    finally:
        hooks._handlers[hooks.EVENTS_INGESTED].remove(handler)
    assert sorted(seen) == sorted(result.event_ids)
    assert not Event.objects.filter(processed_at__isnull=True).exists()


def test_a_failing_hook_leaves_the_events_unprocessed_for_a_retry(browser_source):
    def broken(*, events):
        raise RuntimeError("segment store down")

    hooks.register(hooks.EVENTS_INGESTED, broken)
    try:
        result = _ingest(browser_source)
        with pytest.raises(RuntimeError):
            events_process(event_ids=result.event_ids)
    finally:
        hooks._handlers[hooks.EVENTS_INGESTED].remove(broken)
    assert Event.objects.filter(processed_at__isnull=True).count() == 3
    assert events_process(event_ids=result.event_ids) == 3


def test_the_tick_re_enqueues_events_that_redis_lost(browser_source, run_jobs):
    # given events accepted, whose job Redis then lost
    _ingest(browser_source)
    assert django_rq.get_queue("events").count == 1
    django_rq.get_connection("default").flushdb()
    # when the tick runs before they are due for a retry, nothing happens
    assert tick()["events"] == 0
    # and once they are overdue, it hands them back to the workers
    later = clock.now() + dt.timedelta(minutes=1)
    with clock.frozen(later):
        assert tick()["events"] == 3
        # a second tick does not enqueue the same work twice while it waits
        tick()
    assert django_rq.get_queue("events").count == 1
    run_jobs()
    assert not Event.objects.filter(processed_at__isnull=True).exists()
    assert (
        Event.objects.get(pk=Event.objects.first().pk).contact.last_seen_at is not None
    )


def test_healthz_reports_the_backlog_and_queues(client, browser_source):
    _ingest(browser_source)
    report = client.get("/healthz").json()
    assert report["database"]["ok"] and report["redis"]["ok"]
    assert report["redis"]["queues"]["events"] == 1
    assert report["backlog"]["events"]["due"] == 3
