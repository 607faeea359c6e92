"""An events job takes over the processing jobs still waiting behind it: under load
the workers process events in batches, and no event is lost or processed twice on
the way."""

import uuid

import django_rq
import pytest
from django.db import OperationalError
from rq.job import Job

from apps.core import jobs
from apps.events import tasks
from apps.events.ingestion import events_ingest
from apps.events.models import EventFailure, PendingEvent
from apps.events.schemas import Track
from tests.fixtures import burst_worker

pytestmark = pytest.mark.django_db(transaction=True)


def _request(source, name: str = "viewed", count: int = 1) -> list[int]:
    """One tracking request's events (its processing job queued on commit)."""
    return events_ingest(
        source=source,
        messages=[
            Track(anonymousId="a", event=name, messageId=str(uuid.uuid4()))
            for _ in range(count)
        ],
    ).event_ids


def _waiting() -> list[tuple[str, tuple]]:
    queue = django_rq.get_queue("events")
    return [
        (job.func_name.rsplit(".", 1)[-1], tuple(job.args)) for job in queue.get_jobs()
    ]


@pytest.fixture
def batches(monkeypatch):
    """The event ids of each events_process call the jobs make."""
    seen: list[list[int]] = []
    process = tasks.events_process

    def watched(*, event_ids, **kwargs):
        seen.append(sorted(event_ids))
        return process(event_ids=event_ids, **kwargs)

    monkeypatch.setattr(tasks, "events_process", watched)
    return seen


def test_the_first_job_a_worker_takes_processes_the_requests_waiting_behind_it(
    browser_source, batches
):
    # given three requests' events, each with its job waiting on the queue
    first, second, third = (_request(browser_source, count=n) for n in (1, 2, 3))
    assert len(_waiting()) == 3

    # when a real worker runs one job
    burst_worker(["events"]).work(burst=True, max_jobs=1, logging_level="WARNING")

    # then that job processed all six events together, and left nothing waiting
    assert batches == [sorted(first + second + third)]
    assert not PendingEvent.objects.exists()
    assert _waiting() == []
    # and the jobs it took are gone from Redis (not left for a worker to find)
    connection = django_rq.get_connection("default")
    assert not list(connection.scan_iter("rq:job:*"))


def test_only_jobs_of_the_same_kind_still_waiting_are_taken(browser_source, batches):
    # given a request's job, the tick's re-enqueue of other events (another kind of
    # job) and a job another worker popped at this very moment (off the queue)
    own = _request(browser_source)
    again = _request(browser_source)
    queue = django_rq.get_queue("events")
    queue.empty()  # (the requests' own jobs: the first is running, the other lost)
    jobs.enqueue(tasks.process_events_again, again, queue="events", on_commit=False)
    popped = _request(browser_source)
    popped_id = queue.get_job_ids()[-1]
    assert queue.remove(popped_id) == 1

    # when the request's own job runs
    tasks.process_events(own)

    # then it took neither: the re-enqueue still waits, the popped job is whole
    assert _waiting() == [("process_events_again", (again,))]
    assert Job.fetch(popped_id, connection=queue.connection).args == (popped,)
    assert batches == [own]


def test_when_the_batch_fails_the_taken_events_go_back_to_the_queue(
    browser_source, batches, contended_for
):
    # given a request's event, and behind it a request whose event's handler
    # waits for a lock another transaction holds
    own = _request(browser_source)
    queue = django_rq.get_queue("events")
    with contended_for("contended"):
        behind = _request(browser_source, name="contended")
        own_job = Job.fetch(queue.get_job_ids()[0], connection=queue.connection)
        queue.remove(own_job.id)  # (the worker's pop)

        # when the job that took it over fails on it (the lock wait times out)
        with pytest.raises(OperationalError, match="lock timeout"):
            tasks.process_events(own)

        # then the taken event waits on the queue again, in a job of its own
        assert _waiting() == [("process_events", (behind,))]
    # (and it failed for the database's passing trouble: no attempt counted)
    assert not EventFailure.objects.filter(attempts__gt=0).exists()

    # when a worker runs it once the lock is free, then every event is processed
    burst_worker(["events"]).work(burst=True, logging_level="WARNING")
    assert not PendingEvent.objects.exists()
    assert batches[-1] == behind
