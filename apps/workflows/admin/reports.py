"""The workflow report page in admin: the numbers of apps.workflows.reports as
tables (which need no JavaScript) and two charts drawn by
static/nudge/admin/workflow_report.js with the vendored Chart.js."""

import datetime as dt
from functools import partial

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path

from apps.core import clock
from apps.core.permissions import guarded

from ..models import Workflow
from ..reports import Report, workflow_report

# ?days=N: the enrollments that entered in the last N days ("" = all of them).
PERIODS = [
    ("", "All time"),
    ("7", "Last 7 days"),
    ("30", "Last 30 days"),
    ("90", "Last 90 days"),
]


def report_urls(model_admin) -> list:
    view = guarded(model_admin, partial(workflow_report_view, model_admin), "view")
    return [path("<int:pk>/report/", view, name="workflows_workflow_report")]


def workflow_report_view(model_admin, request, pk: int):
    workflow = get_object_or_404(Workflow, pk=pk)
    if not model_admin.has_view_permission(request, workflow):
        raise PermissionDenied
    days = request.GET.get("days", "")
    if days not in dict(PERIODS):
        days = ""
    since = clock.now() - dt.timedelta(days=int(days)) if days else None
    report = workflow_report(workflow=workflow, since=since)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Report: {workflow}",
        "opts": model_admin.model._meta,
        "original": workflow,
        "report": report,
        "periods": PERIODS,
        "days": days,
        "period": dict(PERIODS)[days],
        "chart_data": chart_data(report),
    }
    return TemplateResponse(request, "admin/workflows/workflow/report.html", context)


def chart_data(report: Report) -> dict:
    """What the charts draw (rendered with json_script: escaped, never executed)."""
    funnel = report.funnel
    return {
        "funnel": {
            "labels": ["Entered", *(step.key for step in funnel)],
            "counts": [report.entered, *(step.reached for step in funnel)],
        },
        "series": {
            "labels": [day.day.isoformat() for day in report.series],
            "entered": [day.entered for day in report.series],
            "converted": [day.converted for day in report.series],
        },
    }
