"""Retention, kind by kind: each goes once past its window and not a minute before;
0 keeps it for ever; what something still needs stays, whatever its age."""

import runpy
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from apps.campaigns.models import Message
from apps.contacts.models import Identity
from apps.core import clock
from apps.events.models import Event, EventFailure
from apps.privacy import retention
from apps.privacy.retention import kinds
from apps.privacy.retention.runs import retention_run
from apps.workflows.models import Enrollment

from .retention_data import (
    NOW,
    a_contact,
    a_decision,
    a_finished_trace,
    a_segment_refresh,
    a_step_run,
    a_webhook_delivery,
    an_anonymous_contact,
    an_enrollment,
    an_esp_event,
    an_event,
    days_ago,
    exists,
    just_inside,
    just_outside,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frozen_clock():
    with clock.frozen(NOW):
        yield


# --- events ------------------------------------------------------------------------


def test_events_received_just_past_the_window_go_and_those_just_inside_stay():
    # given
    contact = a_contact()
    old = an_event(contact, just_outside(396))
    recent = an_event(contact, just_inside(396))

    # when
    run = retention_run()

    # then
    assert not exists(old)
    assert exists(recent)
    assert run.deleted["events"] == 1


def test_the_events_window_follows_its_setting(settings):
    # given
    settings.NUDGE_RETAIN_EVENTS_DAYS = 10
    contact = a_contact()
    old = an_event(contact, just_outside(10))
    recent = an_event(contact, just_inside(10))

    # when
    retention_run()

    # then
    assert not exists(old)
    assert exists(recent)


def test_zero_days_keeps_events_for_ever(settings):
    # given
    settings.NUDGE_RETAIN_EVENTS_DAYS = 0
    ancient = an_event(a_contact(), days_ago(3000))

    # when
    run = retention_run()

    # then
    assert exists(ancient)
    assert "events" not in run.deleted


def test_old_events_that_work_still_needs_are_kept():
    # given an event never processed, a failing one, a dead-lettered one, and the
    # trigger of a run still going
    contact = a_contact()
    at = days_ago(500)
    unprocessed = an_event(contact, at, processed=False)
    failing = an_event(contact, at, processed=False)
    dead = an_event(contact, at)
    for event, status in ((failing, "failing"), (dead, "dead")):
        EventFailure.objects.create(
            event_id=event.pk, status=status, first_failed_at=at, last_failed_at=at
        )
    trigger = an_event(contact, at)
    an_enrollment(
        contact, status=Enrollment.Status.WAITING, trigger_event_id=trigger.pk
    )
    finished_trigger = an_event(contact, at)
    an_enrollment(
        contact,
        status=Enrollment.Status.COMPLETED,
        finished_at=at,
        trigger_event_id=finished_trigger.pk,
    )

    # when
    retention_run()

    # then
    assert all(exists(e) for e in (unprocessed, failing, dead, trigger))
    assert not exists(finished_trigger)


def test_events_are_deleted_a_batch_at_a_time(monkeypatch):
    # given five old events and batches of two
    monkeypatch.setattr(kinds, "BATCH", 2)
    contact = a_contact()
    for _ in range(5):
        an_event(contact, days_ago(400))
    recent = an_event(contact, days_ago(1))

    # when
    run = retention_run()

    # then
    assert list(Event.objects.all()) == [recent]
    assert run.deleted["events"] == 5


# --- the other kinds ---------------------------------------------------------------

KINDS = [
    ("trigger_decisions", "NUDGE_RETAIN_DECISIONS_DAYS", 30, a_decision),
    ("esp_events", "NUDGE_RETAIN_ESP_EVENTS_DAYS", 90, an_esp_event),
    ("segment_refreshes", "NUDGE_RETAIN_SEGMENT_REFRESHES_DAYS", 90, a_segment_refresh),
    (
        "webhook_deliveries",
        "NUDGE_RETAIN_WEBHOOK_DELIVERIES_DAYS",
        30,
        a_webhook_delivery,
    ),
    ("step_runs", "NUDGE_RETAIN_STEP_RUNS_DAYS", 180, a_finished_trace),
]


@pytest.mark.parametrize(("kind", "setting", "days", "make"), KINDS)
def test_each_kind_goes_just_past_its_window_and_stays_just_inside(
    kind, setting, days, make
):
    # given
    old = make(just_outside(days))
    recent = make(just_inside(days))

    # when
    run = retention_run()

    # then
    assert not exists(old)
    assert exists(recent)
    assert run.deleted[kind] == 1


@pytest.mark.parametrize(("kind", "setting", "days", "make"), KINDS)
def test_each_kind_is_kept_for_ever_at_zero_days(settings, kind, setting, days, make):
    # given
    setattr(settings, setting, 0)
    ancient = make(days_ago(3000))

    # when
    run = retention_run()

    # then
    assert exists(ancient)
    assert kind not in run.deleted


def test_a_running_enrollment_keeps_its_whole_trace():
    # given a run that started long ago and still waits
    enrollment = an_enrollment(a_contact(), status=Enrollment.Status.WAITING)
    first_step = a_step_run(enrollment, days_ago(700))

    # when
    retention_run()

    # then
    assert exists(first_step)


def test_a_trace_goes_whole_once_its_enrollment_finished_past_the_window():
    # given a run that began a year ago and finished a month ago
    enrollment = an_enrollment(
        a_contact(), status=Enrollment.Status.COMPLETED, finished_at=days_ago(30)
    )
    early = a_step_run(enrollment, days_ago(365))
    late = a_step_run(enrollment, days_ago(30))

    # when
    retention_run()

    # then nothing goes until the whole trace may
    assert exists(early) and exists(late)


def test_a_pending_webhook_delivery_is_kept_whatever_its_age():
    # given
    pending = a_webhook_delivery(days_ago(400), status="pending")

    # when
    retention_run()

    # then
    assert exists(pending)


def test_a_running_enrollment_keeps_its_webhook_deliveries():
    # given a delivery made long ago, by a run that may loop back to its step
    delivery = a_webhook_delivery(days_ago(400))
    Enrollment.objects.filter(pk=delivery.enrollment_id).update(
        status=Enrollment.Status.WAITING, finished_at=None
    )

    # when
    retention_run()

    # then
    assert exists(delivery)


# --- anonymous contacts ------------------------------------------------------------


def test_anonymous_contacts_unseen_past_the_window_are_purged_with_their_events():
    # given
    gone = an_anonymous_contact(last_seen_at=just_outside(30))
    event = an_event(gone, days_ago(40))
    never_seen = an_anonymous_contact(created_at=just_outside(30))

    # when
    run = retention_run()

    # then
    assert not exists(gone) and not exists(never_seen)
    assert not exists(event)
    assert not Identity.objects.filter(contact_id=gone.pk).exists()
    assert run.deleted["anonymous_contacts"] == 2


def test_identified_and_recently_seen_contacts_stay():
    # given
    with_email = a_contact(last_seen_at=days_ago(300))
    with_user_id = a_contact(email=None, external_id="u-1", last_seen_at=days_ago(300))
    recent = an_anonymous_contact(last_seen_at=just_inside(30))
    new = an_anonymous_contact(created_at=just_inside(30))

    # when
    retention_run()

    # then
    assert all(exists(c) for c in (with_email, with_user_id, recent, new))


def test_an_anonymous_contact_with_a_message_or_a_running_enrollment_stays():
    # given
    messaged = an_anonymous_contact(last_seen_at=days_ago(90))
    Message.objects.create(
        contact=messaged,
        status=Message.Status.FAILED,
        created_at=days_ago(90),
        send_after=days_ago(90),
    )
    enrolled = an_anonymous_contact(last_seen_at=days_ago(90))
    an_enrollment(enrolled, status=Enrollment.Status.WAITING)

    # when
    retention_run()

    # then
    assert exists(messaged) and exists(enrolled)


def test_zero_days_keeps_anonymous_contacts(settings):
    # given
    settings.NUDGE_RETAIN_ANONYMOUS_CONTACTS_DAYS = 0
    old = an_anonymous_contact(last_seen_at=days_ago(900))

    # when
    retention_run()

    # then
    assert exists(old)


def test_the_decisions_older_setting_name_still_sets_their_window(monkeypatch):
    # given an install that set the setting's name from before retention
    monkeypatch.delenv("NUDGE_RETAIN_DECISIONS_DAYS", raising=False)
    monkeypatch.setenv("NUDGE_DECISIONS_DAYS", "7")

    # when the settings are read
    read = runpy.run_path(str(Path(django_settings.BASE_DIR) / "config/settings.py"))

    # then
    assert read["NUDGE_RETAIN_DECISIONS_DAYS"] == 7


def test_the_retention_package_names_every_kind_with_its_setting(settings):
    assert {kind.name for kind in retention.KINDS} == {
        "events",
        "step_runs",
        "trigger_decisions",
        "esp_events",
        "segment_refreshes",
        "webhook_deliveries",
        "anonymous_contacts",
        "unconfirmed_contacts",
    }
    assert all(hasattr(settings, kind.setting) for kind in retention.KINDS)


def test_an_anonymous_contact_with_an_event_still_in_work_is_not_purged():
    # given: unseen past the window, but an event of theirs is not processed yet
    # (a backlog) and another is dead-lettered
    waiting = an_anonymous_contact(last_seen_at=just_outside(30))
    an_event(waiting, NOW, processed=False)
    failed = an_anonymous_contact(last_seen_at=just_outside(30))
    event = an_event(failed, NOW)
    EventFailure.objects.create(
        event_id=event.pk, status="dead", first_failed_at=NOW, last_failed_at=NOW
    )

    # when
    retention_run()

    # then
    assert exists(waiting) and exists(failed)
