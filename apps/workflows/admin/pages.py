"""Workflow pages beyond the edit form: diagram, simulate, test-enroll, why-not,
versions, export / import, and starting from the library."""

import datetime as dt
import json

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.text import slugify

from apps.contacts.models import Contact
from apps.core import clock
from apps.core.permissions import guarded, require

from ..diagram import render_svg, step_counts
from ..library import LIBRARY, workflow_from_library
from ..models import Workflow
from ..portability import ImportProblem, workflow_export, workflow_import
from ..services import (
    enrollment_start,
    enrollments_move_to_current_version,
    why_not_enrolled,
)
from ..simulation import parse_events, simulate

RECENT_CONTACTS = 100


def _recent_contacts():
    return Contact.objects.exclude(email__isnull=True).order_by("-last_seen_at", "-pk")[
        :RECENT_CONTACTS
    ]


class ContactChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return f"{obj} {obj.full_name}".strip()


class SimulateForm(forms.Form):
    contact = ContactChoice(
        queryset=Contact.objects.none(),
        required=False,
        help_text="A real contact (nothing about them changes)…",
    )
    traits = forms.JSONField(
        required=False,
        initial=dict,
        help_text='…or describe one: {"email": "x@example.com", "timezone": "Europe/Paris", "attributes": {"plan": "pro"}}',
    )
    start = forms.DateTimeField(
        required=False, help_text="UTC, e.g. 2026-11-25 12:00 (default: now)"
    )
    events = forms.CharField(
        widget=forms.Textarea(
            attrs={"rows": 6, "cols": 70, "style": "font-family:monospace"}
        ),
        help_text='One a line: +0m add_to_cart {"cart_id": "c1"} / +2h order_completed {"cart_id": "c1"}',
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["contact"].queryset = Contact.objects.filter(
            pk__in=[c.pk for c in _recent_contacts()]
        )

    def clean(self):
        cleaned = super().clean()
        start = cleaned.get("start") or clock.now()
        cleaned["start"] = start if start.tzinfo else start.replace(tzinfo=dt.UTC)
        try:
            cleaned["parsed"] = parse_events(
                cleaned.get("events") or "", start=cleaned["start"]
            )
        except ValueError as exc:
            self.add_error("events", str(exc))
        traits = cleaned.get("traits")
        if traits not in (None, {}) and not isinstance(traits, dict):
            self.add_error("traits", "a JSON object")
        return cleaned


class TestEnrollForm(forms.Form):
    contact = ContactChoice(
        queryset=Contact.objects.none(), help_text="Rendered for this contact…"
    )
    send_to = forms.EmailField(
        help_text="…but every email goes to this address, marked as a test."
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["contact"].queryset = Contact.objects.filter(
            pk__in=[c.pk for c in _recent_contacts()]
        )


class WhyForm(forms.Form):
    who = forms.CharField(label="Contact", help_text="Email or user id")


class ImportForm(forms.Form):
    file = forms.FileField(help_text="A JSON file from “Export”.")
    replace = forms.BooleanField(
        required=False, help_text="Save as a new version of the workflow of that name."
    )


def page_urls(model_admin) -> list:
    pages = Pages(model_admin)
    # Pages that show or pick real contacts need to be allowed to see contacts.
    contacts = "contacts.view_contact"

    def url(route: str, page, name: str, *needs):
        return path(route, guarded(model_admin, page, *needs), name=name)

    return [
        url(
            "<int:pk>/diagram.svg", pages.diagram, "workflows_workflow_diagram", "view"
        ),
        url(
            "<int:pk>/simulate/",
            pages.simulate,
            "workflows_workflow_simulate",
            "change",
            contacts,
        ),
        url(
            "<int:pk>/test-enroll/",
            pages.test_enroll,
            "workflows_workflow_test_enroll",
            "change",
            contacts,
        ),
        url("<int:pk>/why/", pages.why, "workflows_workflow_why", "view", contacts),
        url("<int:pk>/export/", pages.export, "workflows_workflow_export", "view"),
        url(
            "<int:pk>/move-enrollments/",
            pages.move,
            "workflows_workflow_move",
            "change",
        ),
        url("import/", pages.import_, "workflows_workflow_import", "add"),
        url("library/", pages.library, "workflows_workflow_library", "add"),
        url(
            "<int:pk>/status/<str:verb>/",
            pages.status,
            "workflows_workflow_status",
            "change",
        ),
    ]


STATUS_CHANGES = {
    # verb: (service, allowed from, what happens to running contacts)
    "activate": (
        "workflow_activate",
        {"draft", "paused"},
        "New trigger events start enrolling contacts.",
    ),
    "pause": (
        "workflow_pause",
        {"active"},
        "They wait where they are until you resume.",
    ),
    "resume": ("workflow_resume", {"paused"}, "They continue from where they are."),
    "archive": (
        "workflow_archive",
        {"draft", "active", "paused"},
        "They leave the workflow (exit reason “workflow archived”).",
    ),
}


class Pages:
    def __init__(self, model_admin) -> None:
        self.model_admin = model_admin

    def _context(self, request, workflow, title, **extra):
        return {
            **self.model_admin.admin_site.each_context(request),
            "opts": Workflow._meta,
            "original": workflow,
            "workflow": workflow,
            "title": title,
            **extra,
        }

    def diagram(self, request: HttpRequest, pk: int) -> HttpResponse:
        workflow = get_object_or_404(
            Workflow.objects.select_related("current_version"), pk=pk
        )
        svg = render_svg(workflow.current_version.definition, step_counts(workflow))
        return HttpResponse(svg, content_type="image/svg+xml")

    def simulate(self, request: HttpRequest, pk: int):
        workflow = get_object_or_404(
            Workflow.objects.select_related("current_version"), pk=pk
        )
        form = SimulateForm(request.POST or None)
        result = None
        if request.method == "POST" and form.is_valid():
            result = simulate(
                workflow=workflow,
                events=form.cleaned_data["parsed"],
                contact=form.cleaned_data.get("contact"),
                traits=form.cleaned_data.get("traits") or {},
                start=form.cleaned_data["start"],
            )
        return TemplateResponse(
            request,
            "admin/workflows/workflow/simulate.html",
            self._context(
                request,
                workflow,
                f"Simulate “{workflow.name}”",
                form=form,
                result=result,
            ),
        )

    def test_enroll(self, request: HttpRequest, pk: int):
        workflow = get_object_or_404(
            Workflow.objects.select_related("current_version"), pk=pk
        )
        form = TestEnrollForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            enrollment, reason = enrollment_start(
                workflow=workflow,
                contact=form.cleaned_data["contact"],
                test_email=form.cleaned_data["send_to"],
            )
            if enrollment:
                messages.success(
                    request,
                    f"Test run #{enrollment.pk} started: its emails go to "
                    f"{form.cleaned_data['send_to']}, marked as tests.",
                )
                return redirect("admin:workflows_enrollment_change", enrollment.pk)
            messages.error(request, f"Not enrolled: {reason}")
        return TemplateResponse(
            request,
            "admin/workflows/workflow/simple_form.html",
            self._context(
                request,
                workflow,
                f"Test “{workflow.name}” on a contact",
                form=form,
                button="Start a test run",
            ),
        )

    def why(self, request: HttpRequest, pk: int):
        workflow = get_object_or_404(
            Workflow.objects.select_related("current_version"), pk=pk
        )
        form = WhyForm(request.GET or None)
        lines, contact = None, None
        if form.is_valid():
            from apps.segments.services import contacts_by_keys

            found = contacts_by_keys([form.cleaned_data["who"]])
            contact = Contact.objects.filter(pk__in=found.values()).first()
            if contact is None:
                form.add_error("who", "no contact has that email or user id")
            else:
                lines = why_not_enrolled(workflow=workflow, contact=contact)
        return TemplateResponse(
            request,
            "admin/workflows/workflow/why.html",
            self._context(
                request,
                workflow,
                f"Why (not) “{workflow.name}”?",
                form=form,
                lines=lines,
                contact=contact,
            ),
        )

    def export(self, request: HttpRequest, pk: int) -> HttpResponse:
        workflow = get_object_or_404(
            Workflow.objects.select_related("current_version"), pk=pk
        )
        response = HttpResponse(
            json.dumps(workflow_export(workflow), indent=2, ensure_ascii=False),
            content_type="application/json",
        )
        response["Content-Disposition"] = (
            f'attachment; filename="workflow-{slugify(workflow.name)}.json"'
        )
        return response

    def import_(self, request: HttpRequest):
        form = ImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            if form.cleaned_data["replace"]:
                require(request, self.model_admin, "change")
            try:
                data = json.loads(form.cleaned_data["file"].read().decode("utf-8"))
                workflow = workflow_import(
                    data, replace=form.cleaned_data["replace"], user=request.user
                )
            except (ValueError, UnicodeDecodeError) as exc:
                errors = (
                    exc.errors
                    if isinstance(exc, ImportProblem)
                    else [f"not JSON: {exc}"]
                )
                for error in errors:
                    form.add_error("file", error)
            else:
                messages.success(
                    request,
                    f"Imported “{workflow.name}” (version {workflow.current_version.number}).",
                )
                return redirect("admin:workflows_workflow_change", workflow.pk)
        return TemplateResponse(
            request,
            "admin/workflows/workflow/simple_form.html",
            self._context(
                request,
                None,
                "Import a workflow",
                form=form,
                button="Import",
                multipart=True,
            ),
        )

    def move(self, request: HttpRequest, pk: int):
        workflow = get_object_or_404(
            Workflow.objects.select_related("current_version"), pk=pk
        )
        if request.method == "POST":
            moved, stayed = enrollments_move_to_current_version(workflow=workflow)
            messages.success(
                request,
                f"{moved} running enrollments moved to version {workflow.current_version.number}.",
            )
            for reason, count in stayed.items():
                messages.warning(request, f"{count} stayed on their version: {reason}.")
        return redirect("admin:workflows_workflow_change", workflow.pk)

    def status(self, request: HttpRequest, pk: int, verb: str):
        """Activate / pause / resume / archive, after a confirmation that counts who
        is affected."""
        from .. import services
        from ..models import Enrollment

        workflow = get_object_or_404(
            Workflow.objects.select_related("current_version"), pk=pk
        )
        if verb not in STATUS_CHANGES:
            return redirect("admin:workflows_workflow_change", workflow.pk)
        service, allowed, consequence = STATUS_CHANGES[verb]
        running = workflow.enrollments.filter(status__in=Enrollment.RUNNING).count()
        if workflow.status not in allowed:
            messages.error(
                request, f"A {workflow.status} workflow cannot be told to {verb}."
            )
            return redirect("admin:workflows_workflow_change", workflow.pk)
        if request.method == "POST":
            try:
                getattr(services, service)(workflow=workflow)
            except services.StatusError as refused:
                messages.error(request, f"{refused}.")  # changed meanwhile
                return redirect("admin:workflows_workflow_change", workflow.pk)
            messages.success(
                request,
                f"“{workflow.name}” is now {workflow.status}; {running} contacts were in it.",
            )
            return redirect("admin:workflows_workflow_change", workflow.pk)
        return TemplateResponse(
            request,
            "admin/workflows/workflow/confirm_status.html",
            self._context(
                request,
                workflow,
                f"{verb.capitalize()} “{workflow.name}”?",
                verb=verb,
                running=running,
                consequence=consequence,
            ),
        )

    def library(self, request: HttpRequest):
        if request.method == "POST" and request.POST.get("slug") in LIBRARY:
            workflow = workflow_from_library(
                slug=request.POST["slug"], user=request.user
            )
            messages.success(
                request,
                f"“{workflow.name}” created as a draft, with its starter email templates.",
            )
            return redirect("admin:workflows_workflow_change", workflow.pk)
        entries = [
            {
                "slug": slug,
                "name": e["name"],
                "description": e["description"],
                "svg": render_svg(e["definition"]),
            }
            for slug, e in LIBRARY.items()
        ]
        return TemplateResponse(
            request,
            "admin/workflows/workflow/library.html",
            self._context(request, None, "Start from a template", entries=entries),
        )
