"""The retention run: its record, an error or a dead worker in the middle, a run out
of time; the daily job the scheduler tick enqueues."""

import datetime as dt

import django_rq
import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from apps.core import clock
from apps.core.roles import roles_sync
from apps.core.scheduler import tick
from apps.events.models import Event
from apps.privacy.models import RetentionRun
from apps.privacy.retention import kinds
from apps.privacy.retention.runs import JOB_ID, QUEUE, retention_run

from .retention_data import NOW, a_contact, an_esp_event, an_event, days_ago, exists

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frozen_clock():
    with clock.frozen(NOW):
        yield


# --- the run and its record ---------------------------------------------------------


def test_a_run_records_what_it_deleted_per_kind_and_when():
    # given
    an_event(a_contact(), days_ago(400))
    an_esp_event(days_ago(100))
    an_esp_event(days_ago(100))

    # when
    run = retention_run()

    # then
    run.refresh_from_db()
    assert run.status == RetentionRun.Status.DONE
    assert run.deleted == {"events": 1, "esp_events": 2}
    assert run.started_at == run.finished_at == NOW
    assert run.error == ""


def test_an_error_in_one_kind_is_recorded_the_others_run_and_the_next_run_completes(
    monkeypatch, settle
):
    # given ESP events whose delete breaks, and old events
    def broken(ids, cutoff):
        raise RuntimeError("disk on fire")

    original = list(kinds.KINDS)
    monkeypatch.setattr(
        "apps.privacy.retention.runs.KINDS",
        [
            kinds.Kind(k.name, k.setting, k.batches, broken)
            if k.name == "esp_events"
            else k
            for k in original
        ],
    )
    esp_event = an_esp_event(days_ago(100))
    event = an_event(a_contact(), days_ago(400))

    # when the day's run runs
    settle()

    # then
    failed = RetentionRun.objects.get()
    assert failed.status == RetentionRun.Status.FAILED
    assert "esp_events" in failed.error and "disk on fire" in failed.error
    assert failed.deleted == {"events": 1}
    assert not exists(event) and exists(esp_event)

    # when the cause is fixed and a day passes
    monkeypatch.setattr("apps.privacy.retention.runs.KINDS", original)
    clock.advance(dt.timedelta(days=1))
    settle()

    # then
    latest = RetentionRun.objects.order_by("-started_at").first()
    assert latest.status == RetentionRun.Status.DONE
    assert latest.deleted == {"esp_events": 1}
    assert not exists(esp_event)


def test_a_run_out_of_time_stops_between_batches_and_the_next_tick_goes_on(
    monkeypatch, settle
):
    # given three old events, batches of two, and no time at all
    monkeypatch.setattr(kinds, "BATCH", 2)
    contact = a_contact()
    for _ in range(3):
        an_event(contact, days_ago(400))

    # when
    first = retention_run(budget_seconds=0)

    # then it did one batch
    assert first.status == RetentionRun.Status.PARTIAL
    assert first.deleted == {"events": 2}

    # when the scheduler ticks
    settle()

    # then another run finished the work at once
    assert not Event.objects.exists()
    last = RetentionRun.objects.order_by("-pk").first()
    assert (last.status, last.deleted) == (RetentionRun.Status.DONE, {"events": 1})


def test_a_run_whose_worker_died_is_taken_over_once_its_job_timeout_has_passed(
    settle,
):
    # given a run that began 6 minutes ago (the job timeout is 5) and never ended
    event = an_event(a_contact(), days_ago(400))
    dead = RetentionRun.objects.create(started_at=NOW - dt.timedelta(minutes=6))

    # when the scheduler ticks
    settle()

    # then a new run did the work, and says what became of the other one
    dead.refresh_from_db()
    assert dead.status == RetentionRun.Status.FAILED
    assert "worker died" in dead.error
    assert not exists(event)
    assert RetentionRun.objects.filter(status="done").count() == 1


def test_a_run_still_within_its_job_timeout_is_left_to_finish(settle):
    # given
    running = RetentionRun.objects.create(started_at=NOW - dt.timedelta(minutes=1))

    # when the scheduler ticks
    settle()

    # then
    assert list(RetentionRun.objects.all()) == [running]


# --- the daily job -------------------------------------------------------------------


def test_the_tick_enqueues_the_job_once_with_a_stable_id(
    django_capture_on_commit_callbacks,
):
    # when the scheduler ticks twice before a worker takes the job
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            tick()

    # then one job waits
    queue = django_rq.get_queue(QUEUE)
    assert [job.id for job in queue.jobs if job.id == JOB_ID] == [JOB_ID]


def test_the_job_runs_once_a_day_and_not_twice(later, settle):
    # given the first day's run
    settle()
    assert RetentionRun.objects.count() == 1

    # when the day goes on
    later(hours=23, minutes=59)

    # then no second run
    assert RetentionRun.objects.count() == 1

    # when a day has passed since the first began
    later(minutes=1)

    # then
    assert RetentionRun.objects.count() == 2
    assert RetentionRun.objects.filter(status="done").count() == 2


def test_a_job_lost_by_redis_is_enqueued_again_by_a_later_tick(
    django_capture_on_commit_callbacks, settle
):
    # given the tick enqueued the job and Redis lost it
    with django_capture_on_commit_callbacks(execute=True):
        tick()
    assert "privacy-retention" in django_rq.get_queue(QUEUE).job_ids
    django_rq.get_connection(QUEUE).flushdb()

    # when the scheduler ticks again
    settle()

    # then the day's run happened
    assert RetentionRun.objects.get().status == RetentionRun.Status.DONE


# --- admin ---------------------------------------------------------------------------


def staff_client(role: str) -> Client:
    from django.apps import apps

    roles_sync(apps)
    user = User.objects.create_user(
        f"{role.lower()}-user", password="pw", is_staff=True
    )
    user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client


def test_admins_read_retention_runs_and_cannot_change_them():
    # given
    run = retention_run()
    RetentionRun.objects.filter(pk=run.pk).update(deleted={"events": 1200})
    client = staff_client("Admin")

    # when
    listing = client.get(reverse("admin:privacy_retentionrun_changelist"))
    page = client.get(reverse("admin:privacy_retentionrun_change", args=[run.pk]))

    # then
    assert listing.status_code == 200
    assert "events 1200" in listing.content.decode()
    assert page.status_code == 200
    assert "events: 1200" in page.content.decode()
    assert 'name="_save"' not in page.content.decode()
    add = client.get(reverse("admin:privacy_retentionrun_add"))
    assert add.status_code == 403


def test_marketers_do_not_see_retention_runs():
    # given
    client = staff_client("Marketer")

    # when
    listing = client.get(reverse("admin:privacy_retentionrun_changelist"))

    # then
    assert listing.status_code == 403
