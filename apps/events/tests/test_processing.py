"""Processing new events: once each, and never lost when Redis forgets a job."""

import datetime as dt
import uuid

import django_rq
import pytest

from apps.core import clock, hooks
from apps.core.scheduler import tick
from apps.events.ingestion import events_ingest
from apps.events.models import Event, EventFailure
from apps.events.processing import events_process, events_retry
from apps.events.schemas import Track

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
        assert events_process(event_ids=result.event_ids) == 0
    finally:
        hooks._handlers[hooks.EVENTS_INGESTED].remove(broken)
    assert Event.objects.filter(processed_at__isnull=True).count() == 3
    assert EventFailure.objects.filter(attempts=1).count() == 3
    # once the cause is gone, the next try processes them and forgets the failures
    assert events_process(event_ids=result.event_ids) == 3
    assert not EventFailure.objects.exists()


def test_one_bad_event_does_not_hold_back_its_chunk(browser_source, failing_for):
    # given a chunk of events, one of which a handler cannot take
    messages = [
        Track(anonymousId="anon-1", event=name, messageId=str(uuid.uuid4()))
        for name in ["viewed", "poison", "added_to_cart", "viewed"]
    ]
    result = events_ingest(source=browser_source, messages=messages)
    poison = Event.objects.get(name="poison")
    # when the chunk is processed
    with failing_for("poison"):
        processed = events_process(event_ids=result.event_ids)
    # then the others are processed, and the bad one is recorded, unprocessed
    assert processed == 3
    assert sorted(
        Event.objects.filter(processed_at__isnull=False).values_list("name", flat=True)
    ) == ["added_to_cart", "viewed", "viewed"]
    poison.refresh_from_db()
    assert poison.processed_at is None
    failure = EventFailure.objects.get()
    assert failure.event_id == poison.pk
    assert (failure.status, failure.attempts) == (EventFailure.Status.FAILING, 1)
    assert f"cannot handle poison #{poison.pk}" in failure.error
    # and the contact was seen, by its good events
    assert poison.contact.last_seen_at is not None


START = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)


def test_a_failing_event_is_retried_later_then_dead_lettered(
    browser_source, run_jobs, settings, failing_for
):
    settings.NUDGE_EVENT_MAX_ATTEMPTS = 3
    with clock.frozen(START), failing_for("poison"):
        # given an event that fails, in a chunk with a good one
        events_ingest(
            source=browser_source,
            messages=[
                Track(anonymousId="a", event=name, messageId=str(uuid.uuid4()))
                for name in ["poison", "viewed"]
            ],
        )
        run_jobs()
        poison = Event.objects.get(name="poison")
        assert Event.objects.get(name="viewed").processed_at is not None
        # when the tick comes before its retry is due, it leaves it alone
        clock.advance(dt.timedelta(seconds=30))
        assert tick()["events"] == 0
        # then tries it again once due: a second failure, a longer wait
        clock.advance(dt.timedelta(minutes=1))
        assert tick()["events"] == 1
        run_jobs()
        failure = EventFailure.objects.get(event_id=poison.pk)
        assert (failure.status, failure.attempts) == (EventFailure.Status.FAILING, 2)
        assert failure.retry_at > clock.now() + dt.timedelta(minutes=5)
        clock.advance(dt.timedelta(minutes=11))
        assert tick()["events"] == 1
        run_jobs()
        # and after the third, it is set aside: the tick no longer picks it up
        failure.refresh_from_db()
        assert (failure.status, failure.attempts) == (EventFailure.Status.DEAD, 3)
        clock.advance(dt.timedelta(hours=1))
        assert tick()["events"] == 0
        assert not Event.objects.filter(processed_at__isnull=True).exists()


def test_a_dead_lettered_event_can_be_retried_once_the_cause_is_fixed(
    browser_source, run_jobs, settings, failing_for
):
    # given a dead-lettered event
    settings.NUDGE_EVENT_MAX_ATTEMPTS = 1
    with failing_for("poison"):
        _ingest_named(browser_source, "poison")
        run_jobs()
    poison = Event.objects.get()
    assert EventFailure.objects.get().status == EventFailure.Status.DEAD
    # when it is retried, the handler fixed
    assert events_retry(event_ids=[poison.pk]) == 1
    run_jobs()
    # then it is processed, and its failure forgotten
    poison.refresh_from_db()
    assert poison.processed_at is not None
    assert not EventFailure.objects.exists()


def test_a_retried_event_that_fails_again_is_dead_lettered_again(
    browser_source, run_jobs, settings, failing_for
):
    settings.NUDGE_EVENT_MAX_ATTEMPTS = 2
    with failing_for("poison"):
        _ingest_named(browser_source, "poison")
        poison = Event.objects.get()
        events_process(event_ids=[poison.pk])
        events_process(event_ids=[poison.pk])
        assert EventFailure.objects.get().status == EventFailure.Status.DEAD
        # when retried with the cause still there
        events_retry(event_ids=[poison.pk])
        run_jobs()
    # then one more try, and it is set aside again
    failure = EventFailure.objects.get()
    assert (failure.status, failure.attempts) == (EventFailure.Status.DEAD, 3)
    poison.refresh_from_db()
    assert poison.processed_at is not None


def _ingest_named(source, name):
    return events_ingest(
        source=source,
        messages=[Track(anonymousId="a", event=name, messageId=str(uuid.uuid4()))],
    )


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
    assert report["dead_letters"]["events"] == 0


def test_healthz_counts_dead_lettered_events_and_warns(
    client, browser_source, settings, failing_for
):
    # given one event dead-lettered
    settings.NUDGE_EVENT_MAX_ATTEMPTS = 1
    with failing_for("poison"):
        result = _ingest_named(browser_source, "poison")
        events_process(event_ids=result.event_ids)
    # then
    response = client.get("/healthz")
    report = response.json()
    assert response.status_code == 200
    assert report["dead_letters"]["events"] == 1
    assert report["status"] == "warning"
    assert any("events: 1 dead-lettered" in w for w in report["warnings"])
