import json

from django import forms
from django.contrib import admin, messages
from django.db.models import BigIntegerField, OuterRef, Subquery
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from apps.campaigns.models import Message
from apps.contacts.admin_search import CONTACT_HELP, LargeTableAdminMixin
from apps.contacts.panels import register_contact_action

from ..definition import validate_definition
from ..models import (
    Enrollment,
    StepRun,
    TriggerDecision,
    TriggerRun,
    WebhookDelivery,
    Workflow,
    WorkflowVersion,
)
from ..services import (
    DefinitionError,
    StatusError,
    enroll_manually,
    workflow_activate,
    workflow_archive,
    workflow_pause,
    workflow_resume,
    workflow_save_version,
)

# Runs (with their traces) shown on the workflow page; the rest are in Enrollments.
RECENT_RUNS = 20


class WorkflowForm(forms.ModelForm):
    definition = forms.JSONField(
        widget=forms.Textarea(
            attrs={
                "rows": 24,
                "class": "vLargeTextField",
                "style": "font-family:monospace",
            }
        ),
        help_text="Trigger, rules and steps (see docs/workflows.md). Saving an edit creates a new "
        "version; running enrollments stay on the version they entered.",
    )

    class Meta:
        model = Workflow
        fields = ["name", "description"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.current_version:
            self.initial["definition"] = self.instance.current_version.definition

    def clean_definition(self):
        definition = self.cleaned_data["definition"]
        errors = validate_definition(definition)
        if errors:
            raise forms.ValidationError(errors)
        return definition


class StepRunInline(admin.TabularInline):
    model = StepRun
    extra = 0
    can_delete = False
    fields = ["step_key", "started_at", "outcome", "why"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        # The status of the email a step queued, in the same query (not one query
        # per row of a long trace).
        message = Message.objects.filter(pk=OuterRef("message_ref"))
        return (
            super()
            .get_queryset(request)
            .annotate(
                message_ref=Cast(
                    KeyTextTransform("message_id", "detail"), BigIntegerField()
                )
            )
            .annotate(
                message_status=Subquery(message.values("status")[:1]),
                message_error=Subquery(message.values("error")[:1]),
            )
        )

    @admin.display(description="why")
    def why(self, obj: StepRun) -> str:
        reason = (obj.detail or {}).get("reason", "")
        status = getattr(obj, "message_status", None)
        if not status:
            return reason
        # What became of the email since: the step queued it; delivery decides.
        outcome = Message.Status(status).label.lower()
        if obj.message_error and status != Message.Status.SENT:
            outcome += f" ({obj.message_error})"
        return f"{reason}; message #{obj.message_ref}: {outcome}"


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    form = WorkflowForm
    change_form_template = "admin/workflows/workflow/change_form.html"
    list_display = [
        "name",
        "status",
        "trigger",
        "running",
        "version_number",
        "updated_at",
    ]
    list_filter = ["status", "trigger_type"]
    search_fields = ["name", "description"]
    readonly_fields = ["status"]
    actions = ["activate", "pause", "resume", "archive"]

    def get_urls(self):
        from .editor import editor_urls
        from .pages import page_urls
        from .reports import report_urls

        return [
            *editor_urls(self),
            *report_urls(self),
            *page_urls(self),
            *super().get_urls(),
        ]

    @admin.display(description="trigger")
    def trigger(self, obj: Workflow) -> str:
        from ..triggers import trigger_of

        if not obj.current_version:
            return ""
        kind, config = trigger_of(obj.current_version.definition)
        return kind.describe(config)

    @admin.display(description="report")
    def report_link(self, obj: Workflow) -> str:
        url = reverse("admin:workflows_workflow_report", args=[obj.pk])
        return format_html('<a href="{}">Report</a>', url)

    @admin.display(description="running")
    def running(self, obj: Workflow) -> int:
        return obj.enrollments.filter(status__in=Enrollment.RUNNING).count()

    @admin.display(description="version")
    def version_number(self, obj: Workflow) -> int | None:
        return obj.current_version.number if obj.current_version else None

    def change_view(self, request, object_id, form_url="", extra_context=None):
        workflow = self.get_object(request, object_id)
        if workflow is not None:
            runs = (
                workflow.enrollments.select_related("contact", "version")
                .prefetch_related("runs")
                .order_by("-entered_at")[:RECENT_RUNS]
            )
            older = workflow.enrollments.filter(status__in=Enrollment.RUNNING).exclude(
                version=workflow.current_version
            )
            # The runs name their contacts: only for those who may see contacts.
            sees_contacts = request.user.has_perm("contacts.view_contact")
            extra_context = {
                **(extra_context or {}),
                "sees_contacts": sees_contacts,
                "recent_runs": runs if sees_contacts else [],
                "older_version_runs": older.count(),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        if change:
            # Only what the form edits: the status and its times read at the start
            # of the request must not be written back over a pause or an archive
            # someone made meanwhile (status changes are the services' own).
            obj.save(update_fields=["name", "description", "updated_at"])
        else:
            super().save_model(request, obj, form, change)
        try:
            version = workflow_save_version(
                workflow=obj,
                definition=form.cleaned_data["definition"],
                user=request.user,
            )
        except DefinitionError as exc:  # validated in the form already; a race at most
            messages.error(request, "; ".join(exc.errors))
            return
        if change and version.number > 1:
            messages.info(
                request,
                f"Saved as version {version.number}: " + ", ".join(version.changes),
            )

    def _confirm(self, request, queryset, verb, run, affected):
        if request.POST.get("confirmed"):
            done, total = 0, 0
            for workflow in queryset:
                try:
                    total += run(workflow=workflow) or 0
                    done += 1
                except StatusError as refused:
                    self.message_user(request, f"Skipped: {refused}.", messages.WARNING)
            self.message_user(
                request, f"{done} workflows: {verb} ({total} enrollments affected)."
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": f"{verb.capitalize()} {queryset.count()} workflows?",
            "queryset": queryset,
            "verb": verb,
            "affected": affected,
            "action": request.POST.get("action"),
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "opts": self.model._meta,
        }
        return TemplateResponse(
            request, "admin/workflows/workflow/confirm_action.html", context
        )

    def _running(self, queryset) -> int:
        return Enrollment.objects.filter(
            workflow__in=queryset, status__in=Enrollment.RUNNING
        ).count()

    @admin.action(permissions=["change"], description="Activate the selected workflows")
    def activate(self, request, queryset):
        return self._confirm(request, queryset, "activate", workflow_activate, 0)

    @admin.action(
        permissions=["change"],
        description="Pause (running contacts wait where they are)",
    )
    def pause(self, request, queryset):
        return self._confirm(
            request, queryset, "pause", workflow_pause, self._running(queryset)
        )

    @admin.action(permissions=["change"], description="Resume paused workflows")
    def resume(self, request, queryset):
        return self._confirm(
            request, queryset, "resume", workflow_resume, self._running(queryset)
        )

    @admin.action(permissions=["change"], description="Archive (running contacts exit)")
    def archive(self, request, queryset):
        return self._confirm(
            request, queryset, "archive", workflow_archive, self._running(queryset)
        )


@admin.register(Enrollment)
class EnrollmentAdmin(LargeTableAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "contact",
        "workflow",
        "status",
        "current_step",
        "entered_at",
        "finished_at",
        "exit_reason",
    ]
    list_filter = ["status", "workflow", "is_test"]
    # Only shown in the search box; LargeTableAdminMixin says what is searched.
    search_fields = ["=id"]
    search_help_text = f"Exact match: {CONTACT_HELP}, or an enrollment id."
    list_select_related = ["contact", "workflow", "current_step"]
    inlines = [StepRunInline]
    readonly_fields = [f.name for f in Enrollment._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(TriggerDecision)
class TriggerDecisionAdmin(LargeTableAdminMixin, admin.ModelAdmin):
    list_display = ["decided_at", "contact", "workflow", "event_name", "reason"]
    list_filter = ["workflow"]
    # Only shown in the search box; LargeTableAdminMixin says what is searched.
    search_fields = ["=contact__email"]
    search_help_text = f"Exact match: {CONTACT_HELP}."
    list_select_related = ["contact", "workflow"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(TriggerRun)
class TriggerRunAdmin(admin.ModelAdmin):
    """Time-trigger runs: did Monday's 9:00 schedule go out, and to how many."""

    list_display = [
        "workflow",
        "due_at",
        "status",
        "enrolled",
        "started_at",
        "finished_at",
    ]
    list_filter = ["status", "workflow"]
    list_select_related = ["workflow"]
    readonly_fields = [f.name for f in TriggerRun._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(LargeTableAdminMixin, admin.ModelAdmin):
    contact_search = None  # no search box: its rows hold no contact
    list_display = ["id", "url", "status", "attempts", "response_status", "created_at"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]

    def has_add_permission(self, request):
        return False

    def get_fields(self, request, obj=None):
        # What a receiver answered is shown only to those who may point the step at
        # another URL anyway; to anyone else it would be a window into whatever the
        # URL reaches.
        fields = super().get_fields(request, obj)
        if self._may_edit_workflow(request, obj):
            return fields
        return [name for name in fields if name != "response_body"]

    def _may_edit_workflow(self, request, obj) -> bool:
        workflow = obj.enrollment.workflow if obj is not None else None
        workflow_admin = self.admin_site.get_model_admin(Workflow)
        return workflow_admin.has_change_permission(request, workflow)


@admin.register(WorkflowVersion)
class WorkflowVersionAdmin(admin.ModelAdmin):
    list_display = ["workflow", "number", "created_at", "created_by", "change_list"]
    list_filter = ["workflow"]
    readonly_fields = [
        "workflow",
        "number",
        "created_at",
        "created_by",
        "changes",
        "definition_pretty",
    ]
    exclude = ["definition"]

    @admin.display(description="changes")
    def change_list(self, obj):
        return ", ".join(obj.changes or [])

    @admin.display(description="definition")
    def definition_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.definition, indent=2))

    def has_add_permission(self, request):
        return False


def enrollments_panel(request, contact) -> str:
    enrollments = (
        Enrollment.objects.filter(contact=contact)
        .select_related("workflow", "current_step")
        .prefetch_related("runs")
        .order_by("-entered_at")[:20]
    )
    decisions = (
        TriggerDecision.objects.filter(contact=contact)
        .select_related("workflow")
        .order_by("-decided_at")[:20]
    )
    return render_to_string(
        "admin/workflows/enrollments_panel.html",
        {"enrollments": enrollments, "decisions": decisions},
        request=request,
    )


class EnrollForm(forms.Form):
    workflow = forms.ModelChoiceField(
        queryset=Workflow.objects.filter(status=Workflow.Status.ACTIVE)
    )


# Changes the list (or the run), not the contacts: seeing them is enough here,
# with the other app's change permission (register_contact_action's needs).
@admin.action(permissions=["view"], description="Enroll in a workflow…")
def enroll_in_workflow(modeladmin, request, queryset):
    form = EnrollForm(request.POST if "apply" in request.POST else None)
    if form.is_valid():
        result = enroll_manually(
            workflow=form.cleaned_data["workflow"], contacts=list(queryset)
        )
        modeladmin.message_user(
            request,
            f"{len(result['enrolled'])} enrolled; {len(result['skipped'])} not.",
        )
        for who, reason in list(result["skipped"].items())[:10]:
            modeladmin.message_user(request, f"{who}: {reason}", level=messages.WARNING)
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Enroll in a workflow",
        "form": form,
        "contacts": queryset,
        "opts": modeladmin.model._meta,
        "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/workflows/enroll_action.html", context)


register_contact_action(enroll_in_workflow, needs=("workflows.change_workflow",))
