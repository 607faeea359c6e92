"""The report's admin page."""

import datetime as dt
import json
import re

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from apps.core import clock

from ..conftest import START
from .data import AB_SEND, S, enroll, ran, sent, through

pytestmark = pytest.mark.django_db


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
