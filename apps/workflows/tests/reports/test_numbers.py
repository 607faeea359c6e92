"""The report's numbers: totals, steps, emails and the daily series, and that they
agree with what the real engine did."""

import datetime as dt
import json

import pytest

from apps.campaigns.models import Message
from apps.core import clock
from apps.workflows.models import Step
from apps.workflows.reports import (
    daily_series,
    main_path,
    workflow_report,
)
from apps.workflows.services import enrollment_start, workflow_save_version

from ..conftest import START
from .data import SPLIT_THEN_OFFER, S, enroll, ran, sent, through

pytestmark = pytest.mark.django_db


# -- totals -----------------------------------------------------------------------------


def test_totals_count_each_status_and_each_exit_reason(workflow):
    # given
    for status in (S.ACTIVE, S.WAITING, S.WAITING, S.COMPLETED, S.CONVERTED, S.FAILED):
        enroll(workflow, status=status)
    enroll(workflow, status=S.EXITED, reason="unsubscribed")
    enroll(workflow, status=S.EXITED, reason="workflow archived")
    enroll(workflow, status=S.EXITED, reason="workflow archived")
    # when
    report = workflow_report(workflow=workflow)
    # then
    assert report.entered == 9
    assert report.active == 3
    assert (report.completed, report.converted, report.failed) == (1, 1, 1)
    assert report.exited == 3
    assert report.exit_reasons == [("workflow archived", 2), ("unsubscribed", 1)]
    assert report.conversion_percent == pytest.approx(100 / 9)


def test_test_enrollments_and_their_sends_never_count(workflow):
    # given
    real = through(workflow, ["welcome"], status=S.CONVERTED)
    sent(real, "welcome", delivered_at=START)
    test = through(workflow, ["welcome", "pause"], status=S.CONVERTED, is_test=True)
    sent(test, "welcome", delivered_at=START, opened_at=START)
    # when
    report = workflow_report(workflow=workflow)
    # then
    assert (report.entered, report.converted) == (1, 1)
    reached = {s.key: s.reached for s in report.steps}
    assert reached["welcome"] == 1
    assert reached["pause"] == 0
    welcome = report.emails[0]
    assert (welcome.sent, welcome.delivered, welcome.opened) == (1, 1, 0)
    assert [day.converted for day in report.series][-1] == 1


def test_since_limits_the_report_to_contacts_who_entered_since(workflow):
    # given
    enroll(workflow, status=S.CONVERTED, at=START - dt.timedelta(days=10))
    enroll(workflow, status=S.COMPLETED, at=START - dt.timedelta(days=1))
    # when
    report = workflow_report(workflow=workflow, since=START - dt.timedelta(days=7))
    # then
    assert (report.entered, report.completed, report.converted) == (1, 1, 0)


def test_an_empty_workflow_reports_zeros_without_dividing_by_zero(workflow):
    report = workflow_report(workflow=workflow)

    assert report.entered == 0
    assert report.conversion_percent is None
    assert [s.reached for s in report.steps] == [0, 0, 0, 0, 0]
    assert report.steps[0].drop_off_percent is None
    assert report.experiments[0].comparison.verdict.startswith("too few contacts")


# -- steps ------------------------------------------------------------------------------


def test_steps_count_who_reached_each_and_who_is_there_now(workflow):
    # given: 4 entered; 3 ran the welcome, 2 waited (one is still waiting), and 1 went
    # on to the split and offer A; the wait ran twice for each (start, resume)
    enroll(workflow, status=S.ACTIVE, step="welcome")
    through(workflow, ["welcome"], status=S.EXITED, reason="unsubscribed")
    waiting = through(workflow, ["welcome", "pause"], status=S.WAITING, step="pause")
    ran(waiting, "pause", outcome="waiting")
    done = through(workflow, ["welcome", "pause", "pause"])
    ran(done, "split", outcome="A", variant="A")
    ran(done, "offer-a", outcome="sent")
    # when
    report = workflow_report(workflow=workflow)
    # then
    rows = {s.key: s for s in report.steps}
    assert [(s.key, s.reached, s.current) for s in report.steps] == [
        ("welcome", 3, 1),
        ("pause", 2, 1),
        ("split", 1, 0),
        ("offer-a", 1, 0),
        ("offer-b", 0, 0),
    ]
    assert rows["welcome"].dropped == 1  # of the 4 who entered
    assert rows["pause"].dropped == 1
    assert rows["pause"].drop_off_percent == pytest.approx(100 / 3)
    assert rows["split"].dropped == 1
    assert rows["offer-a"].on_main_path
    assert rows["offer-a"].dropped is None  # the split shares them out: no loss
    assert not rows["offer-b"].on_main_path
    assert rows["offer-b"].dropped is None


def test_the_main_path_follows_the_outlet_most_contacts_took(workflow):
    # given: more went to offer B than to offer A
    for variant in ("A", "B", "B"):
        enrollment = through(workflow, ["welcome", "pause"])
        ran(enrollment, "split", outcome=variant, variant=variant)
        ran(enrollment, f"offer-{variant.lower()}", outcome="sent")
    # when
    report = workflow_report(workflow=workflow)
    # then
    assert [s.key for s in report.funnel] == ["welcome", "pause", "split", "offer-b"]
    assert report.steps[-1].key == "offer-a"


def test_the_main_path_stops_at_a_loop():
    steps = {
        "a": Step(key="a", outlets={"next": "b"}),
        "b": Step(key="b", outlets={"yes": "a", "no": ""}),
    }
    assert main_path(steps, "a", {}) == ["a", "b"]


def test_steps_are_counted_by_key_across_versions(workflow):
    # given: v2 adds a step before the split; an enrollment on each version
    old = through(workflow, ["welcome", "pause"], status=S.WAITING, step="pause")
    sent(old, "welcome", delivered_at=START)
    definition = json.loads(json.dumps(SPLIT_THEN_OFFER))
    definition["steps"][1]["next"] = {"next": "survey"}
    definition["steps"].insert(
        2,
        {
            "key": "survey",
            "type": "send_email",
            "config": {"template": "Tips"},
            "next": {"next": "split"},
        },
    )
    workflow_save_version(workflow=workflow, definition=definition)
    workflow.refresh_from_db()
    new = through(workflow, ["welcome", "pause"], status=S.WAITING, step="pause")
    sent(new, "welcome", delivered_at=START, clicked_at=START)
    # when
    report = workflow_report(workflow=workflow)
    # then
    rows = {s.key: s for s in report.steps}
    assert (rows["welcome"].reached, rows["pause"].reached) == (2, 2)
    assert rows["pause"].current == 2
    assert [s.key for s in report.funnel][:4] == ["welcome", "pause", "survey", "split"]
    welcome = next(e for e in report.emails if e.step_key == "welcome")
    assert (welcome.sent, welcome.delivered, welcome.opened, welcome.clicked) == (
        2,
        2,
        1,
        1,
    )


# -- emails -----------------------------------------------------------------------------


def test_send_steps_count_what_the_esp_reported(workflow):
    # given
    stamps = [
        {"delivered_at": START},
        {"delivered_at": START, "opened_at": START},
        {"opened_at": START, "clicked_at": START},  # no delivery webhook came
        {"bounced_at": START, "delivery": Message.Delivery.BOUNCED},
        {"delivered_at": START, "unsubscribed_at": START},
        {"delivered_at": START, "complained_at": START},
        {"status": Message.Status.FAILED},
    ]
    for fields in stamps:
        sent(through(workflow, ["welcome"]), "welcome", **fields)
    # when
    report = workflow_report(workflow=workflow)
    # then
    welcome, offer_a, offer_b = report.emails
    assert welcome.step_key == "welcome"
    assert welcome.sent == 6
    assert [(name, n) for name, n, _ in welcome.columns] == [
        ("delivered", 5),
        ("opened", 2),
        ("clicked", 1),
        ("bounced", 1),
        ("unsubscribed", 1),
        ("complained", 1),
    ]
    assert welcome.columns[0][2] == pytest.approx(500 / 6)
    assert (offer_a.step_key, offer_a.sent, offer_a.columns[0][2]) == (
        "offer-a",
        0,
        None,
    )
    assert offer_b.step_key == "offer-b"


# -- over time --------------------------------------------------------------------------


def test_the_daily_series_covers_30_days_with_zeros_where_nothing_happened(workflow):
    # given
    with clock.frozen(START):
        enroll(workflow, at=START - dt.timedelta(days=2))
        enroll(workflow, status=S.CONVERTED, at=START - dt.timedelta(days=2))
        enroll(workflow, status=S.CONVERTED, at=START)
        enroll(workflow, at=START - dt.timedelta(days=30))  # before the window
        enroll(workflow, at=START, is_test=True)
        # when
        series = daily_series(workflow=workflow)
    # then
    assert len(series) == 30
    assert series[0].day == dt.date(2026, 10, 27)
    assert series[-1].day == dt.date(2026, 11, 25)
    by_day = {d.day: (d.entered, d.converted) for d in series}
    assert by_day[dt.date(2026, 11, 23)] == (2, 1)
    assert by_day[dt.date(2026, 11, 25)] == (1, 1)
    assert sum(d.entered for d in series) == 3
    assert by_day[dt.date(2026, 11, 24)] == (0, 0)


def test_the_report_takes_the_same_few_queries_however_many_enrollments(
    workflow, django_assert_max_num_queries
):
    for variant in ("A", "B") * 10:
        enrollment = through(workflow, ["welcome", "pause"], status=S.CONVERTED)
        sent(enrollment, "welcome")
        ran(enrollment, "split", outcome=variant)

    with django_assert_max_num_queries(10):
        workflow_report(workflow=workflow, since=START - dt.timedelta(days=1))


# -- with the real engine ---------------------------------------------------------------


def test_the_report_agrees_with_what_the_engine_did(
    make_workflow, customer, settle, later, outbox, frozen_clock
):
    # given
    workflow = make_workflow("Real", **SPLIT_THEN_OFFER)
    for i in range(6):
        enrollment_start(workflow=workflow, contact=customer(f"r{i}"))
    enrollment_start(
        workflow=workflow, contact=customer("t"), test_email="qa@example.com"
    )
    settle()
    later(days=1, minutes=1)
    # when
    report = workflow_report(workflow=workflow)
    # then
    assert report.entered == 6
    assert report.completed == 6
    rows = {s.key: s for s in report.steps}
    assert (
        rows["welcome"].reached == rows["pause"].reached == rows["split"].reached == 6
    )
    (split,) = report.experiments
    assert sum(v.enrollments for v in split.variants) == 6
    offers = sum(e.sent for e in report.emails if e.step_key.startswith("offer"))
    assert offers == 6 - split.variants[-1].enrollments  # all but the holdout
    assert report.emails[0].sent == 6
