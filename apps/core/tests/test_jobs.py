"""Enqueueing by job id with real RQ workers: a job whose worker was killed does not
keep its id from being enqueued again for ever."""

import datetime as dt
import os
import signal

import pytest

from apps.core import jobs
from tests.jobs import hold_the_first_time
from tests.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_job_whose_worker_was_killed_can_be_enqueued_again_after_its_timeout(
    processes, settings, monkeypatch, tmp_path
):
    # given a job (a timeout of 1 s) whose worker was SIGKILLed while running it:
    # RQ still lists it as started under its id
    settings.RQ_QUEUES = {
        name: {**config, "DEFAULT_TIMEOUT": 1}
        for name, config in settings.RQ_QUEUES.items()
    }
    monkeypatch.setattr(jobs, "DEATH_MARGIN_SECONDS", 0, raising=False)
    marker = tmp_path / "marker"
    worker = processes.worker("worker-1.log", queues=("default",))
    jobs.enqueue(hold_the_first_time, str(marker), job_id="once-1", on_commit=False)
    wait_for(marker.exists, "the worker to start the job")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    # when, past its timeout, the same work is enqueued again under its id (as the
    # tick re-enqueues a message or an event nobody finished)
    wait_for(lambda: _running_for("once-1") > 1.5, "the job's timeout to pass")
    jobs.enqueue(hold_the_first_time, str(marker), job_id="once-1", on_commit=False)
    # then a new worker runs it
    processes.worker("worker-2.log", queues=("default",))
    wait_for(lambda: marker.read_text() == "ran again", "the job to run again")


def _running_for(job_id) -> float:
    """Seconds since RQ marked the job started (by RQ's clock)."""
    from rq.job import Job
    from rq.utils import now

    job = Job.fetch(job_id, connection=jobs.get_queue("default").connection)
    started = job.started_at.replace(tzinfo=dt.UTC)
    return (now() - started).total_seconds()


def test_the_processes_tests_start_share_the_tests_clock(processes):
    """Under NUDGE_TEST_CLOCK_SHIFT_DAYS the workers a test starts must see the
    test's date, not a year off (a shift started twice in one of them)."""
    import subprocess
    import sys

    from apps.core import clock

    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import datetime; print(datetime.datetime.now(datetime.UTC).isoformat())",
        ],
        env=processes.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    theirs = dt.datetime.fromisoformat(shown)
    assert abs(theirs - clock.now()) < dt.timedelta(minutes=5)


def test_a_job_popped_by_a_worker_killed_before_starting_it_can_be_enqueued_again():
    # given a job whose id a worker took off the queue and then died, before RQ
    # marked it started: its hash still says "queued", but no list holds it
    from tests.jobs import noop

    jobs.enqueue(noop, job_id="orphan-1", on_commit=False)
    queue = jobs.get_queue("default")
    assert queue.connection.lrem(queue.key, 0, "orphan-1") == 1

    # when the same work is enqueued again under its id (the tick's re-enqueue)
    jobs.enqueue(noop, job_id="orphan-1", on_commit=False)

    # then it waits on the queue again, to be run
    assert "orphan-1" in queue.get_job_ids()


def test_a_job_still_waiting_on_its_queue_is_not_enqueued_twice():
    from tests.jobs import noop

    jobs.enqueue(noop, job_id="waiting-1", on_commit=False)
    jobs.enqueue(noop, job_id="waiting-1", on_commit=False)

    assert jobs.get_queue("default").get_job_ids().count("waiting-1") == 1
