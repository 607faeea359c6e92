"""Processing new events: once each, and never lost when Redis forgets a job."""

import datetime as dt
import uuid

import django_rq
import pytest
from django.db import OperationalError
from rq.timeouts import JobTimeoutException

from apps.core import clock, hooks
from apps.core.scheduler import tick
from apps.events.ingestion import events_ingest
from apps.events.models import Event, EventFailure, PendingEvent
from apps.events.processing import events_process, events_retry
from apps.events.schemas import Track
from apps.events.selectors import is_pending
from tests.poison import KILLS_ITS_WORKER
from tests.processes import wait_for

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
    assert not PendingEvent.objects.exists()


def test_a_failing_hook_leaves_the_events_unprocessed_for_a_retry(browser_source):
    def broken(*, events):
        raise RuntimeError("segment store down")

    with clock.frozen(START):
        hooks.register(hooks.EVENTS_INGESTED, broken)
        try:
            result = _ingest(browser_source)
            assert events_process(event_ids=result.event_ids) == 0
        finally:
            hooks._handlers[hooks.EVENTS_INGESTED].remove(broken)
        assert PendingEvent.objects.count() == 3
        assert EventFailure.objects.filter(attempts=1).count() == 3
        # not tried again before their retry is due
        assert events_process(event_ids=result.event_ids) == 0
        # once the cause is gone, the next try processes them, forgets the failures
        clock.advance(dt.timedelta(minutes=1))
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
        Event.objects.exclude(
            pk__in=PendingEvent.objects.values("event_id")
        ).values_list("name", flat=True)
    ) == ["added_to_cart", "viewed", "viewed"]
    poison.refresh_from_db()
    assert is_pending(poison.pk)
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
        assert not is_pending(Event.objects.get(name="viewed").pk)
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
        assert not PendingEvent.objects.exists()


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
    assert not is_pending(poison.pk)
    assert not EventFailure.objects.exists()


def test_a_retried_event_that_fails_again_is_dead_lettered_again(
    browser_source, run_jobs, settings, failing_for
):
    settings.NUDGE_EVENT_MAX_ATTEMPTS = 2
    with clock.frozen(START), failing_for("poison"):
        _ingest_named(browser_source, "poison")
        poison = Event.objects.get()
        events_process(event_ids=[poison.pk])
        clock.advance(dt.timedelta(minutes=1))
        events_process(event_ids=[poison.pk])
        assert EventFailure.objects.get().status == EventFailure.Status.DEAD
        # when retried with the cause still there
        events_retry(event_ids=[poison.pk])
        run_jobs()
    # then one more try, and it is set aside again
    failure = EventFailure.objects.get()
    assert (failure.status, failure.attempts) == (EventFailure.Status.DEAD, 3)
    poison.refresh_from_db()
    assert not is_pending(poison.pk)


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
    assert not PendingEvent.objects.exists()
    assert (
        Event.objects.get(pk=Event.objects.first().pk).contact.last_seen_at is not None
    )


def test_healthz_reports_the_backlog_and_queues(admin_client, browser_source):
    _ingest(browser_source)
    report = admin_client.get("/healthz").json()  # details for staff only
    assert report["database"]["ok"] and report["redis"]["ok"]
    assert report["redis"]["queues"]["events"] == 1
    assert report["backlog"]["events"]["due"] == 3
    assert report["dead_letters"]["events"] == 0


def test_healthz_counts_dead_lettered_events_and_warns(
    admin_client, browser_source, settings, failing_for
):
    # given one event dead-lettered
    settings.NUDGE_EVENT_MAX_ATTEMPTS = 1
    with failing_for("poison"):
        result = _ingest_named(browser_source, "poison")
        events_process(event_ids=result.event_ids)
    # then
    response = admin_client.get("/healthz")
    report = response.json()
    assert response.status_code == 200
    assert report["dead_letters"]["events"] == 1
    assert report["status"] == "warning"
    assert any("events: 1 dead-lettered" in w for w in report["warnings"])


# -- failures that are not the event's own -------------------------------------------


def test_an_event_that_kills_its_worker_every_time_is_dead_lettered(
    processes, browser_source
):
    # given real workers, and a chunk of events one of which kills the worker
    # process handling it (as an out-of-memory kill would), retried without delay
    processes.env.update(
        DJANGO_SETTINGS_MODULE="tests.poison.settings",
        NUDGE_EVENT_MAX_ATTEMPTS="3",
        NUDGE_EVENT_RETRY_SECONDS="0",
    )
    names = ["viewed", KILLS_ITS_WORKER, "added_to_cart", "viewed"]
    events_ingest(
        source=browser_source,
        messages=[
            Track(anonymousId="a", event=name, messageId=str(uuid.uuid4()))
            for name in names
        ],
    )
    poison = Event.objects.get(name=KILLS_ITS_WORKER)
    # when workers process them, a new worker started whenever one dies
    kills = []
    worker = processes.worker("worker-0.log")
    processes.scheduler()

    def all_settled() -> bool:
        nonlocal worker
        if worker.poll() is not None:
            kills.append(worker.returncode)
            worker = processes.worker(f"worker-{len(kills)}.log")
        return not PendingEvent.objects.exists()

    wait_for(all_settled, "every event processed or dead-lettered", timeout=90)
    # then the poison event is set aside after its attempts, each of which killed
    # a worker, and the others of its chunk are processed
    failure = EventFailure.objects.get()
    assert failure.event_id == poison.pk
    assert (failure.status, failure.attempts) == (EventFailure.Status.DEAD, 3)
    assert "did not finish" in failure.error
    # one kill for each counted attempt, and before them at most two uncounted:
    # the chunk taken together fresh, then together by the tick (its batch row
    # outliving the job is what sends the chunk one at a time)
    assert 3 <= len(kills) <= 5
    assert set(kills) == {-9}


def test_a_lock_timeout_is_not_counted_as_an_attempt(
    browser_source, settings, contended_for
):
    settings.NUDGE_EVENT_MAX_ATTEMPTS = 2
    result = _ingest_named(browser_source, "contended")
    # given an event whose handler waits for a row another connection holds
    with contended_for("contended"):
        # when it is processed more often than its attempts allow, and times out
        for _ in range(3):
            # then the job fails (the tick and RQ try it again later) ...
            with pytest.raises(OperationalError, match="lock timeout"):
                events_process(event_ids=result.event_ids)
    # ... and no attempt counts against the event: not set aside, it is processed
    # once the lock is free
    assert not EventFailure.objects.filter(attempts__gt=0).exists()
    assert events_process(event_ids=result.event_ids) == 1


def test_a_lock_timeout_on_a_retry_does_not_count_either(
    browser_source, settings, failing_for, contended_for
):
    settings.NUDGE_EVENT_MAX_ATTEMPTS = 2
    with clock.frozen(START):
        # given an event that failed once (its own fault), due for its retry
        result = _ingest_named(browser_source, "contended")
        with failing_for("contended"):
            events_process(event_ids=result.event_ids)
        assert EventFailure.objects.get().attempts == 1
        clock.advance(dt.timedelta(minutes=2))
        # when its retries time out waiting for a lock
        with contended_for("contended"):
            for _ in range(2):
                with pytest.raises(OperationalError, match="lock timeout"):
                    events_process(event_ids=result.event_ids)
        # then they did not count: still one attempt, and due at once
        failure = EventFailure.objects.get()
        assert failure.attempts == 1
        assert failure.status != EventFailure.Status.DEAD
        assert failure.retry_at is None or failure.retry_at <= clock.now()
        assert events_process(event_ids=result.event_ids) == 1


def test_an_events_lock_wait_does_not_hold_back_the_others_of_its_chunk(
    browser_source, contended_for
):
    # given a chunk with an event whose handler waits for a row another connection
    # holds, and two that can be processed
    result = events_ingest(
        source=browser_source,
        messages=[
            Track(anonymousId="a", event=name, messageId=str(uuid.uuid4()))
            for name in ("fine", "contended", "also fine")
        ],
    )
    # when the chunk is processed, the job fails for the one ...
    with (
        contended_for("contended"),
        pytest.raises(OperationalError, match="lock timeout"),
    ):
        events_process(event_ids=result.event_ids)
    # ... and the others were processed meanwhile; the one waits, uncounted
    unprocessed = Event.objects.filter(pk__in=PendingEvent.objects.values("event_id"))
    assert list(unprocessed.values_list("name", flat=True)) == ["contended"]
    assert not EventFailure.objects.filter(attempts__gt=0).exists()
    assert events_process(event_ids=result.event_ids) == 1


def test_a_statement_timeout_is_the_events_own_and_ends_in_a_dead_letter(
    browser_source, settings, require_postgres
):
    from django.db import connection

    from .conftest import _handler

    def too_slow(*, events):
        if any(event.name == "slow" for event in events):
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL statement_timeout = '20ms'")
                cursor.execute("SELECT pg_sleep(1)")

    settings.NUDGE_EVENT_MAX_ATTEMPTS = 2
    with clock.frozen(START), _handler(too_slow):
        # given an event whose own work runs past the statement timeout every time
        result = _ingest_named(browser_source, "slow")
        # when it is processed as often as its attempts allow
        for _ in range(2):
            events_process(event_ids=result.event_ids)
            clock.advance(dt.timedelta(hours=1))
    # then each attempt counted, and it is set aside with the reason
    failure = EventFailure.objects.get()
    assert (failure.status, failure.attempts) == (EventFailure.Status.DEAD, 2)
    assert "statement timeout" in failure.error


TIMED_OUT = JobTimeoutException("Task exceeded maximum timeout value (180 seconds)")


def test_a_job_timeout_ends_the_job_and_is_not_the_events_failure(
    browser_source, failing_for
):
    # given a chunk in which the job's time runs out (RQ's death penalty raises
    # JobTimeoutException wherever a SimpleWorker's job happens to be)
    messages = [
        Track(anonymousId="a", event=name, messageId=str(uuid.uuid4()))
        for name in ["viewed", "slow", "viewed"]
    ]
    result = events_ingest(source=browser_source, messages=messages)
    # when it is processed
    with failing_for("slow", TIMED_OUT), pytest.raises(JobTimeoutException):
        events_process(event_ids=result.event_ids)
    # then the job ended there: nothing ran on without a timeout, nothing was
    # recorded as the event's own failure
    assert PendingEvent.objects.count() == Event.objects.count()
    assert not EventFailure.objects.filter(error__contains="JobTimeout").exists()


def test_a_retry_that_times_out_still_counts_as_an_attempt(browser_source, failing_for):
    with clock.frozen(START):
        # given an event that failed once, due for its retry
        result = _ingest_named(browser_source, "slow")
        with failing_for("slow"):
            events_process(event_ids=result.event_ids)
        clock.advance(dt.timedelta(minutes=2))
        # when the retry's job times out
        with failing_for("slow", TIMED_OUT), pytest.raises(JobTimeoutException):
            events_process(event_ids=result.event_ids)
        # then that attempt counted: it was counted before it started
        assert EventFailure.objects.get().attempts == 2
