"""Time-based triggers: the tick decides a run is due and records it; jobs enroll its
contacts a chunk at a time after a stored cursor, so the tick stays small, nothing
holds contacts for long, and a lost job loses nobody and enrolls nobody twice."""

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator

import django_rq
import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.contacts.models import Contact
from apps.core import clock
from apps.core.scheduler import tick
from apps.workflows import tasks, trigger_runs
from apps.workflows.models import Enrollment, TriggerRun
from apps.workflows.services import (
    workflow_archive,
    workflow_pause,
    workflow_resume,
    workflow_status_held,
)
from apps.workflows.trigger_runs import trigger_run_advance

from .conftest import START, wait_for

WAIT_A_DAY = [{"key": "hold", "type": "wait", "config": {"duration": {"days": 1}}}]
EVERY_MINUTE = {"type": "schedule", "cron": "* * * * *"}
WAIT_SECONDS = 30


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(trigger_runs, "CHUNK", 10)


def _contacts(n: int, **fields) -> list[Contact]:
    first = Contact.objects.count()
    return Contact.objects.bulk_create(
        Contact(email=f"c{first + i}@example.com", **fields) for i in range(n)
    )


def _enrolled() -> list[int]:
    return sorted(Enrollment.objects.values_list("contact_id", flat=True))


@pytest.mark.django_db
def test_the_tick_records_a_run_and_jobs_enroll_it_a_chunk_at_a_time(
    make_workflow, small_chunks, run_jobs, frozen_clock
):
    # given a schedule due now over 25 contacts
    workflow = make_workflow("Minutely", trigger=EVERY_MINUTE, steps=WAIT_A_DAY)
    contacts = _contacts(25)

    # when the scheduler ticks
    assert tick()["workflow-triggers"] == 1

    # then it enrolled nobody itself: it recorded a run
    run = TriggerRun.objects.get()
    assert (run.workflow, run.status, run.cursor) == (workflow, "running", 0)
    assert set(run.plan["occurrences"]) == {"cron:202611251200"}
    assert not Enrollment.objects.exists()

    # when its job runs, then one chunk is enrolled and the cursor moved past it
    assert trigger_run_advance(run_id=run.pk) == 10
    run.refresh_from_db()
    assert run.cursor == contacts[9].pk
    assert _enrolled() == [c.pk for c in contacts[:10]]

    # when the jobs it queued run, then everyone is enrolled, once, and it is done
    run_jobs()
    run.refresh_from_db()
    assert (run.status, run.enrolled, run.finished_at) == ("done", 25, START)
    assert _enrolled() == [c.pk for c in contacts]
    assert set(Enrollment.objects.values_list("occurrence_key", flat=True)) == {
        "cron:202611251200"
    }


@pytest.mark.django_db
def test_the_ticks_work_does_not_grow_with_the_audience(make_workflow, frozen_clock):
    # given a due schedule over a handful of contacts, then over ten times more
    make_workflow("Minutely", trigger=EVERY_MINUTE, steps=WAIT_A_DAY)
    _contacts(5)
    with CaptureQueriesContext(connection) as few:
        tick()
    TriggerRun.objects.all().delete()
    clock.advance(dt.timedelta(minutes=1))
    _contacts(50)
    with CaptureQueriesContext(connection) as many:
        tick()
    # then the tick ran the same statements, none of them over contacts
    assert len(many) == len(few)
    assert not [q for q in many if "contacts_contact" in q["sql"]]


@pytest.mark.django_db
def test_a_lost_job_is_handed_over_again_and_nobody_is_enrolled_twice(
    make_workflow, small_chunks, run_jobs, frozen_clock
):
    # given a run whose first chunk is done
    make_workflow("Minutely", trigger=EVERY_MINUTE, steps=WAIT_A_DAY)
    contacts = _contacts(25)
    tick()
    run = TriggerRun.objects.get()
    trigger_run_advance(run_id=run.pk)
    # and then the job of its next chunk lost (Redis flushed), and the second chunk
    # run again as if its commit had not moved the cursor
    connection.run_on_commit.clear()
    django_rq.get_connection("default").flushdb()
    trigger_run_advance(run_id=run.pk)
    TriggerRun.objects.filter(pk=run.pk).update(cursor=contacts[9].pk)
    connection.run_on_commit.clear()

    # when the tick comes round after the stale period
    clock.advance(dt.timedelta(seconds=31))
    assert tick()["workflow-triggers"] == 1
    run_jobs()

    # then the run carried on from its cursor to the end, everyone enrolled once
    run.refresh_from_db()
    assert run.status == "done"
    assert _enrolled() == [c.pk for c in contacts]


@pytest.mark.django_db
def test_a_run_kept_waiting_behind_events_takes_its_turn_with_them(
    make_workflow, small_chunks, run_jobs, frozen_clock
):
    # given a run whose next chunk waits on the default queue (the workers' last),
    # as it does while a stream of events keeps them busy
    make_workflow("Minutely", trigger=EVERY_MINUTE, steps=WAIT_A_DAY)
    contacts = _contacts(25)
    tick()
    run = TriggerRun.objects.get()
    trigger_run_advance(run_id=run.pk)

    # when the tick finds it not moved for the stale period
    clock.advance(dt.timedelta(seconds=31))
    assert tick()["workflow-triggers"] == 1

    # then the next chunk is on the events queue, taken in turn with the events
    run_jobs(["events"])
    run.refresh_from_db()
    assert run.cursor == contacts[19].pk
    # and the run goes on to the end, everyone enrolled once
    run_jobs()
    run.refresh_from_db()
    assert run.status == "done"
    assert _enrolled() == [c.pk for c in contacts]


def _waiting_jobs(run: TriggerRun) -> list[str]:
    """The run's jobs waiting in any queue."""
    prefix = f"trigger-run-{run.pk}-"
    return [
        job_id
        for name in settings.NUDGE_QUEUES
        for job_id in django_rq.get_queue(name).job_ids
        if job_id.startswith(prefix)
    ]


@pytest.mark.django_db
def test_a_run_handed_over_while_its_job_still_waits_keeps_one_job(
    make_workflow, small_chunks, run_jobs, frozen_clock, monkeypatch
):
    # given a run of five chunks whose first is done, the job of its second still
    # waiting on the default queue when the tick hands the run over to events
    make_workflow("Minutely", trigger=EVERY_MINUTE, steps=WAIT_A_DAY)
    contacts = _contacts(45)
    tick()
    connection.run_on_commit.clear()  # its first job: the call below
    run = TriggerRun.objects.get()
    trigger_run_advance(run_id=run.pk)
    clock.advance(dt.timedelta(seconds=31))
    assert tick()["workflow-triggers"] == 1
    # (watching what waits as each job starts, and which chunks are enrolled)
    waiting_at_start, chunks = [], []
    advance, chunk_enroll = tasks.trigger_run_advance, trigger_runs._chunk_enroll

    def watched_advance(**kwargs):
        waiting_at_start.append(_waiting_jobs(run))
        return advance(**kwargs)

    def watched_chunk_enroll(run, due, now):
        chunks.append(due[0][0])
        return chunk_enroll(run, due, now)

    monkeypatch.setattr(tasks, "trigger_run_advance", watched_advance)
    monkeypatch.setattr(trigger_runs, "_chunk_enroll", watched_chunk_enroll)

    # when the workers run every job
    run_jobs()

    # then each remaining chunk was enrolled once, in order, and everyone once
    assert chunks == [c.pk for c in contacts[10::10]]
    run.refresh_from_db()
    assert (run.status, run.enrolled) == ("done", 45)
    assert _enrolled() == [c.pk for c in contacts]
    # and one job at a time carried the run: none of its others waited while one
    # ran, none ran for nothing, and none is left behind
    assert waiting_at_start == [[]] * 4
    assert _waiting_jobs(run) == []


@pytest.mark.django_db
def test_a_job_for_a_chunk_already_done_does_nothing_and_one_without_a_cursor_works(
    make_workflow, small_chunks, run_jobs, frozen_clock
):
    # given a run whose first chunk is done
    make_workflow("Minutely", trigger=EVERY_MINUTE, steps=WAIT_A_DAY)
    contacts = _contacts(25)
    tick()
    run = TriggerRun.objects.get()
    assert tasks.advance_trigger_run(run.pk, 0) == 10
    connection.run_on_commit.clear()

    # when a job queued for that chunk runs (a hand-over's copy, taken by a worker
    # before it could be withdrawn), then it enrolls nobody and queues nothing
    assert tasks.advance_trigger_run(run.pk, 0) == 0
    assert not connection.run_on_commit
    run.refresh_from_db()
    assert (run.cursor, run.enrolled) == (contacts[9].pk, 10)

    # when a job queued before jobs carried a cursor runs (left in Redis by a
    # deploy), then it takes the run where it is, and its chain finishes it
    assert tasks.advance_trigger_run(run.pk) == 10
    run_jobs()
    run.refresh_from_db()
    assert run.status == "done"
    assert _enrolled() == [c.pk for c in contacts]


@pytest.mark.django_db
def test_pausing_holds_a_run_resuming_continues_it_archiving_cancels_it(
    make_workflow, small_chunks, run_jobs, frozen_clock
):
    workflow = make_workflow("Minutely", trigger=EVERY_MINUTE, steps=WAIT_A_DAY)
    contacts = _contacts(25)
    tick()
    run = TriggerRun.objects.get()
    trigger_run_advance(run_id=run.pk)

    # when paused, then its chunks enroll nobody more
    workflow_pause(workflow=workflow)
    run_jobs()
    assert len(_enrolled()) == 10
    # and no tick starts another run or hands this one over
    clock.advance(dt.timedelta(minutes=5))
    assert tick()["workflow-triggers"] == 0

    # when resumed, then the tick hands it over and it finishes
    workflow_resume(workflow=workflow)
    assert tick()["workflow-triggers"] == 1
    run_jobs()
    assert _enrolled() == [c.pk for c in contacts]

    # and archiving ends a run for good
    TriggerRun.objects.update(status="running")
    workflow_archive(workflow=workflow)
    assert TriggerRun.objects.get().status == "cancelled"


@pytest.mark.django_db
def test_a_chunk_applies_the_entry_condition_and_the_reentry_rule_in_bulk(
    make_workflow, run_jobs, frozen_clock
):
    # given a schedule for pro contacts that runs "while not enrolled"
    workflow = make_workflow(
        "Pro",
        trigger=EVERY_MINUTE,
        entry_condition={"attribute": "plan", "op": "eq", "value": "pro"},
        reentry={"rule": "while_not_enrolled"},
        steps=WAIT_A_DAY,
    )
    pro, free = _contacts(3, attributes={"plan": "pro"}), _contacts(2)
    tick()
    run_jobs()
    assert _enrolled() == [c.pk for c in pro]
    # when it runs again a minute later while they still wait
    clock.advance(dt.timedelta(minutes=1))
    tick()
    run_jobs()
    # then nobody has a second run, and the free contacts none
    assert _enrolled() == [c.pk for c in pro]
    assert TriggerRun.objects.filter(workflow=workflow).count() == 2
    assert not Enrollment.objects.filter(contact__in=free).exists()


@pytest.mark.django_db
def test_a_schedule_enrolls_each_contact_at_nine_in_their_own_time_zone(
    make_workflow, settle, frozen_clock
):
    # given a daily 9:00 schedule, and contacts in Paris and New York
    make_workflow(
        "Morning", trigger={"type": "schedule", "cron": "0 9 * * *"}, steps=WAIT_A_DAY
    )
    paris = _contacts(2, timezone="Europe/Paris")
    new_york = Contact.objects.create(
        email="ny@example.com", timezone="America/New_York"
    )
    nowhere = Contact.objects.create(email="odd@example.com", timezone="Mars/Olympus")
    # when it is 9:00 in Paris (8:00 UTC), then only Paris is enrolled
    with clock.frozen(dt.datetime(2026, 11, 26, 7, 59, tzinfo=dt.UTC)):
        settle()
        clock.advance(dt.timedelta(minutes=1, seconds=5))
        settle()
        assert _enrolled() == [c.pk for c in paris]
        # when it is 9:00 UTC, then the unknown zone (read as UTC) is enrolled
        clock.advance(dt.timedelta(hours=1))
        settle()
        assert nowhere.pk in _enrolled()
        # when it is 9:00 in New York (14:00 UTC), then New York
        clock.advance(dt.timedelta(hours=5))
        settle()
    assert _enrolled() == sorted([c.pk for c in paris] + [new_york.pk, nowhere.pk])
    keys = dict(Enrollment.objects.values_list("contact_id", "occurrence_key"))
    assert keys[new_york.pk] == "cron:202611261400"


@pytest.mark.django_db(transaction=True)
def test_neither_the_tick_nor_a_chunk_holds_a_contact_that_ingestion_updates(
    require_postgres, make_workflow, small_chunks, frozen_clock
):
    # given a due schedule over contacts
    make_workflow("Minutely", trigger=EVERY_MINUTE, steps=WAIT_A_DAY)
    contacts = _contacts(25)

    def in_open_transaction(work) -> None:
        """Run ``work`` in a transaction left open until the check below is done."""
        done, ready = threading.Event(), threading.Event()

        def run() -> None:
            try:
                with transaction.atomic():
                    work()
                    ready.set()
                    done.wait(30)
            finally:
                connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        assert ready.wait(30)
        try:
            # then a contact's row can be updated meanwhile (as the events job
            # stamps last_seen_at), not held until the tick or chunk commits
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '3s'")
            for contact in (contacts[0], contacts[-1]):
                Contact.objects.filter(pk=contact.pk).update(last_seen_at=clock.now())
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")  # the configured one
            done.set()
            thread.join()

    # when the tick runs, and then a chunk of its run, each left uncommitted
    in_open_transaction(tick)
    run = TriggerRun.objects.get()
    in_open_transaction(lambda: trigger_run_advance(run_id=run.pk))
    assert Enrollment.objects.count() == 10


@contextlib.contextmanager
def _held_open(work) -> Iterator[None]:
    """Run ``work`` in a transaction of another connection, left open until the
    block ends."""
    ready, done, errors = threading.Event(), threading.Event(), []

    def run() -> None:
        try:
            with transaction.atomic():
                work()
                ready.set()
                done.wait(WAIT_SECONDS)
        except BaseException as exc:  # the test reports it below
            errors.append(exc)
        finally:
            ready.set()
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    assert ready.wait(WAIT_SECONDS)
    try:
        yield
    finally:
        done.set()
        thread.join()
    assert not errors


def _in_background(work) -> tuple[threading.Thread, list]:
    """Start ``work`` on another connection; its thread, and a list that gets its
    result (or exception)."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:  # the test reports it below
            outcome.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _waiting_on_a_lock() -> int:
    """How many other sessions of this database wait for a lock (a row's)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


@contextlib.contextmanager
def _lock_timeout(seconds: int) -> Iterator[None]:
    """This connection gives up on a lock after ``seconds`` (so the test fails, not
    hangs)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SET lock_timeout = '{seconds}s'")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")  # the configured one


@pytest.mark.django_db(transaction=True)
def test_a_chunk_enrolls_while_an_enrollment_holds_its_workflow(
    require_postgres, make_workflow, small_chunks, frozen_clock
):
    # given a run due over 25 contacts
    workflow = make_workflow("Minutely", trigger=EVERY_MINUTE, steps=WAIT_A_DAY)
    contacts = _contacts(25)
    tick()
    run = TriggerRun.objects.get()

    # when its chunk runs while another transaction holds the workflow's row FOR
    # SHARE, as every enrollment into it does until it commits
    with (
        _held_open(lambda: workflow_status_held(workflow_id=workflow.pk)),
        _lock_timeout(2),
    ):
        enrolled = trigger_run_advance(run_id=run.pk, cursor=0)

    # then the chunk was enrolled, not skipped
    assert enrolled == 10
    run.refresh_from_db()
    assert run.cursor == contacts[9].pk
    assert _enrolled() == [c.pk for c in contacts[:10]]


@pytest.mark.django_db(transaction=True)
def test_a_chunk_waits_for_another_job_holding_its_run_and_does_only_what_is_left(
    require_postgres, make_workflow, small_chunks, frozen_clock
):
    # given a run due over 25 contacts, its first job lost
    make_workflow("Minutely", trigger=EVERY_MINUTE, steps=WAIT_A_DAY)
    contacts = _contacts(25)
    tick()
    run = TriggerRun.objects.get()
    django_rq.get_connection("default").flushdb()

    # when a job for its first chunk holds the run, doing that chunk, as a copy of
    # it starts: then the copy waits, and finds the chunk done, enrolls nobody and
    # queues nothing (the first job queued the next)
    with _held_open(lambda: trigger_run_advance(run_id=run.pk, cursor=0)):
        copy, outcome = _in_background(
            lambda: trigger_run_advance(run_id=run.pk, cursor=0)
        )
        wait_for(
            lambda: _waiting_on_a_lock() == 1,
            "the copy to wait for the run",
            timeout=10,
        )
    copy.join()
    assert outcome == [0]
    assert _waiting_jobs(run) == [f"trigger-run-{run.pk}-{contacts[9].pk}"]

    # when the second chunk's job starts while that copy holds the run again (a
    # worker took it late): then it waits for it, and does the second chunk
    django_rq.get_connection("default").flushdb()
    with _held_open(lambda: trigger_run_advance(run_id=run.pk, cursor=0)):
        job, outcome = _in_background(
            lambda: trigger_run_advance(run_id=run.pk, cursor=contacts[9].pk)
        )
        wait_for(
            lambda: _waiting_on_a_lock() == 1, "the job to wait for the run", timeout=10
        )
    job.join()
    assert outcome == [10]
    assert _enrolled() == [c.pk for c in contacts[:20]]
    assert _waiting_jobs(run) == [f"trigger-run-{run.pk}-{contacts[19].pk}"]


@pytest.mark.django_db
def test_admin_lists_the_runs_to_those_allowed_to_see_them(
    admin_client, client, make_workflow, run_jobs, frozen_clock
):
    from django.contrib.auth.models import User
    from django.urls import reverse

    make_workflow("Minutely", trigger=EVERY_MINUTE, steps=WAIT_A_DAY)
    _contacts(3)
    tick()
    run_jobs()
    url = reverse("admin:workflows_triggerrun_changelist")
    page = admin_client.get(url).content.decode()
    assert "Minutely" in page and "done" in page
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(url).status_code == 403
