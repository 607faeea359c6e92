"""The workflow report: its numbers, its statistics, and its admin page.

Most tests write enrollments, step runs and messages straight into the database (the
report only reads them); one runs the real engine to check the two agree.
"""

import datetime as dt
import itertools
import json
import re

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from apps.campaigns.models import EmailTemplate, Message
from apps.contacts.models import Contact
from apps.core import clock
from apps.workflows.models import Enrollment, Step, StepRun, Workflow
from apps.workflows.reports import (
    Variant,
    compare_largest,
    daily_series,
    main_path,
    two_proportion_z_test,
    workflow_report,
)
from apps.workflows.services import enrollment_start, workflow_save_version

from .conftest import START

pytestmark = pytest.mark.django_db

S = Enrollment.Status
SPLIT_THEN_OFFER = dict(
    trigger={"type": "manual"},
    goal={"event": "order_completed"},
    steps=[
        {
            "key": "welcome",
            "type": "send_email",
            "config": {"template": "Welcome"},
            "next": {"next": "pause"},
        },
        {
            "key": "pause",
            "type": "wait",
            "config": {"duration": {"days": 1}},
            "next": {"next": "split"},
        },
        {
            "key": "split",
            "type": "split",
            "config": {
                "variants": [{"name": "A", "weight": 50}, {"name": "B", "weight": 50}],
                "holdout": 10,
            },
            "next": {"A": "offer-a", "B": "offer-b", "holdout": ""},
        },
        {"key": "offer-a", "type": "send_email", "config": {"template": "A"}},
        {"key": "offer-b", "type": "send_email", "config": {"template": "B"}},
    ],
)
AB_SEND = dict(
    trigger={"type": "manual"},
    steps=[
        {
            "key": "tips",
            "type": "send_email",
            "config": {
                "variants": [
                    {"template": "Tips", "weight": 1},
                    {"template": "Nudge", "weight": 1},
                ]
            },
        }
    ],
)
_emails = itertools.count()


@pytest.fixture
def workflow(make_workflow) -> Workflow:
    return make_workflow("Welcome series", **SPLIT_THEN_OFFER)


def enroll(
    workflow: Workflow,
    *,
    status: str = S.COMPLETED,
    at: dt.datetime = START,
    step: str | None = None,
    reason: str = "",
    is_test: bool = False,
    version=None,
) -> Enrollment:
    version = version or workflow.current_version
    finished = status not in Enrollment.RUNNING
    return Enrollment.objects.create(
        workflow=workflow,
        version=version,
        contact=Contact.objects.create(email=f"c{next(_emails)}@example.com"),
        status=status,
        current_step=version.steps.get(key=step) if step else None,
        entered_at=at,
        finished_at=at if finished else None,
        converted_at=at if status == S.CONVERTED else None,
        exit_reason=reason,
        is_test=is_test,
    )


def ran(enrollment: Enrollment, key: str, outcome: str = "done", **detail) -> StepRun:
    step = enrollment.version.steps.get(key=key)
    return StepRun.objects.create(
        enrollment=enrollment,
        step=step,
        step_key=key,
        started_at=enrollment.entered_at,
        finished_at=enrollment.entered_at,
        outcome=outcome,
        detail={"reason": "test", **detail},
    )


def sent(enrollment: Enrollment, key: str, template: str = "Welcome", **fields):
    fields.setdefault("status", Message.Status.SENT)
    return Message.objects.create(
        contact=enrollment.contact,
        template=EmailTemplate.objects.get(name=template),
        enrollment_id=enrollment.pk,
        step_id=enrollment.version.steps.get(key=key).pk,
        is_test=enrollment.is_test,
        created_at=START,
        send_after=START,
        **fields,
    )


def through(workflow: Workflow, keys: list[str], **fields) -> Enrollment:
    enrollment = enroll(workflow, **fields)
    for key in keys:
        ran(enrollment, key)
    return enrollment


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


# -- A/B --------------------------------------------------------------------------------


def test_a_split_counts_contacts_and_conversions_per_variant(workflow):
    # given
    for variant, status in [
        ("A", S.CONVERTED),
        ("A", S.COMPLETED),
        ("A", S.COMPLETED),
        ("B", S.CONVERTED),
        ("B", S.CONVERTED),
        ("holdout", S.COMPLETED),
    ]:
        enrollment = through(workflow, ["welcome", "pause"], status=status)
        ran(enrollment, "split", outcome=variant)
    # a goal reached while at the split is logged there, but is no variant
    ran(enrollment, "split", outcome="converted")
    # when
    report = workflow_report(workflow=workflow)
    # then
    (split,) = report.experiments
    assert (split.step_key, split.kind) == ("split", "split")
    assert [(v.name, v.enrollments, v.conversions) for v in split.variants] == [
        ("A", 3, 1),
        ("B", 2, 2),
        ("holdout", 1, 0),
    ]
    assert split.variants[1].percent == 100
    assert (split.comparison.a.name, split.comparison.b.name) == ("A", "B")
    assert split.comparison.verdict == "too few contacts to tell (n < 30 per variant)"


def test_an_ab_send_counts_contacts_and_conversions_per_template(make_workflow):
    # given
    workflow = make_workflow("Tips", **AB_SEND)
    for template, status in [
        ("Tips", S.CONVERTED),
        ("Tips", S.COMPLETED),
        ("Nudge", S.COMPLETED),
    ]:
        enrollment = enroll(workflow, status=status)
        ran(enrollment, "tips", outcome="sent", template=template, variant=template)
        sent(enrollment, "tips", template, render_context={"variant": template})
    # a test send picks a variant too, but does not count
    test = enroll(workflow, status=S.CONVERTED, is_test=True)
    ran(test, "tips", outcome="sent", template="Nudge", variant="Nudge")
    # when
    report = workflow_report(workflow=workflow)
    # then
    (tips,) = report.experiments
    assert tips.kind == "send"
    assert [(v.name, v.enrollments, v.conversions) for v in tips.variants] == [
        ("Tips", 2, 1),
        ("Nudge", 1, 0),
    ]
    assert report.emails[0].sent == 3


def test_the_z_test_matches_a_worked_example():
    # 200 of 1000 against 250 of 1000: pooled 0.225, se 0.01867
    z, p = two_proportion_z_test(200, 1000, 250, 1000)

    assert z == pytest.approx(2.677, abs=0.001)
    assert p == pytest.approx(0.0074, abs=0.0001)
    assert two_proportion_z_test(250, 1000, 200, 1000)[0] == pytest.approx(-z)


def test_the_z_test_finds_no_evidence_where_nothing_varies():
    assert two_proportion_z_test(0, 100, 0, 100) == (0.0, 1.0)
    assert two_proportion_z_test(100, 100, 50, 50) == (0.0, 1.0)
    assert two_proportion_z_test(0, 0, 5, 10) == (0.0, 1.0)


@pytest.mark.parametrize(
    "a, b, expected",
    [
        (
            Variant("A", 600, 48),
            Variant("B", 600, 72),
            "B converts better than A (12.0% vs 8.0%, p = 0.02): likely a real difference",
        ),
        (
            Variant("A", 1000, 250),
            Variant("B", 1000, 200),
            "A converts better than B (25.0% vs 20.0%, p = 0.007): likely a real difference",
        ),
        (
            Variant("A", 200, 20),
            Variant("B", 200, 25),
            "not enough evidence yet (p = 0.43); keep the test running",
        ),
        (
            Variant("A", 29, 1),
            Variant("B", 500, 400),
            "too few contacts to tell (n < 30 per variant)",
        ),
        (
            Variant("A", 5000, 100),
            Variant("B", 5000, 200),
            "B converts better than A (4.0% vs 2.0%, p < 0.001): likely a real difference",
        ),
    ],
)
def test_the_verdict_says_what_the_numbers_mean(a, b, expected):
    assert compare_largest([a, b]).verdict == expected


def test_the_comparison_is_of_the_two_largest_variants():
    small = Variant("holdout", 40, 0)
    a, b = Variant("A", 1000, 200), Variant("B", 1000, 250)

    comparison = compare_largest([a, small, b])

    assert (comparison.a, comparison.b) == (a, b)
    assert comparison.difference == pytest.approx(0.05)
    assert comparison.p_value == pytest.approx(0.0074, abs=0.0001)
    assert compare_largest([a]) is None


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


# -- the admin page ---------------------------------------------------------------------


def chart_data(html: str) -> dict:
    found = re.search(
        r'<script id="workflow-report-data" type="application/json">(.*?)</script>',
        html,
        re.S,
    )
    return json.loads(found.group(1))


def test_the_report_page_shows_the_tables_and_the_chart_data(admin_client, workflow):
    # given
    for variant in ("A", "B", "B"):
        enrollment = through(workflow, ["welcome", "pause"], status=S.CONVERTED)
        sent(enrollment, "welcome", delivered_at=START)
        ran(enrollment, "split", outcome=variant)
    enroll(workflow, status=S.EXITED, reason="<b>left</b>")
    url = reverse("admin:workflows_workflow_report", args=[workflow.pk])
    # when
    with clock.frozen(START):
        response = admin_client.get(url)
    # then
    assert response.status_code == 200
    html = response.content.decode()
    assert "Report: Welcome series" in html
    assert 'src="/static/vendor/chartjs/chart.umd.min.js"' in html
    assert "Exited: &lt;b&gt;left&lt;/b&gt;" in html
    assert "<b>left</b>" not in html
    assert "A/B test: split" in html
    data = chart_data(html)
    assert data["funnel"] == {
        "labels": ["Entered", "welcome", "pause", "split", "offer-a"],
        "counts": [4, 3, 3, 3, 0],
    }
    assert len(data["series"]["labels"]) == 30
    assert data["series"]["labels"][-1] == "2026-11-25"
    assert data["series"]["entered"][-1] == 4
    assert data["series"]["converted"][-1] == 3


def test_the_report_page_escapes_the_workflow_name(admin_client, make_workflow):
    definition = json.loads(json.dumps(AB_SEND))
    definition["steps"][0]["key"] = "tips-x"
    workflow = make_workflow("</script><script>alert(1)</script>", **definition)

    response = admin_client.get(
        reverse("admin:workflows_workflow_report", args=[workflow.pk]), {"days": "7"}
    )

    html = response.content.decode()
    assert "<script>alert(1)" not in html
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in html


def test_the_period_filters_the_report_and_an_unknown_one_is_ignored(
    admin_client, workflow
):
    with clock.frozen(START):
        enroll(workflow, at=START - dt.timedelta(days=20))
        enroll(workflow, at=START - dt.timedelta(days=2))
        url = reverse("admin:workflows_workflow_report", args=[workflow.pk])

        last_week = admin_client.get(url, {"days": "7"})
        unknown = admin_client.get(url, {"days": "7; drop table"})

    assert last_week.context["report"].entered == 1
    assert last_week.context["period"] == "Last 7 days"
    assert unknown.context["report"].entered == 2


def test_the_report_page_needs_permission_to_view_workflows(client, workflow):
    User.objects.create_user("staff", password="pw", is_staff=True)
    client.login(username="staff", password="pw")

    response = client.get(
        reverse("admin:workflows_workflow_report", args=[workflow.pk])
    )

    assert response.status_code == 403
