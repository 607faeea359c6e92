import csv
import json

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse

from apps.contacts.models import Contact
from apps.contacts.panels import register_contact_action
from apps.core.permissions import guarded

from .conditions import (
    ConditionError,
    check,
    count_matching,
    describe,
    filters_errors,
    matching_contacts,
)
from .models import ScoringRule, Segment, SegmentMembership, SegmentRefresh
from .selectors import vocabulary
from .services import (
    ImportError_,
    segment_add_contacts,
    segment_enqueue_refresh,
    segment_import_csv,
    segment_remove_contacts,
)

SAMPLE_SIZE = 10
EMPTY_CONDITION = {"version": 1, "all": []}


class ConditionField(forms.JSONField):
    """The condition as JSON, validated with errors that point at the broken node."""

    def validate(self, value):
        super().validate(value)
        if value in (None, "", {}):
            return
        try:
            check(value)
        except ConditionError as exc:
            raise forms.ValidationError(exc.errors) from None


class SegmentForm(forms.ModelForm):
    condition = ConditionField(
        required=False,
        widget=forms.Textarea(
            attrs={"rows": 6, "class": "vLargeTextField nudge-condition-json"}
        ),
        help_text="Built with the editor below; stored as JSON.",
    )

    class Meta:
        model = Segment
        fields = ["name", "description", "kind", "condition", "refresh_minutes"]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("kind") == Segment.Kind.DYNAMIC:
            condition = cleaned.get("condition") or EMPTY_CONDITION
            if condition in ({}, EMPTY_CONDITION) or condition.get("all") == []:
                self.add_error(
                    "condition", "A dynamic segment needs at least one rule."
                )
            cleaned["condition"] = condition
        else:
            cleaned["condition"] = cleaned.get("condition") or {}
        return cleaned


class RefreshInline(admin.TabularInline):
    model = SegmentRefresh
    extra = 0
    max_num = 0
    can_delete = False
    fields = ["kind", "started_at", "duration_ms", "entered", "exited", "members"]
    readonly_fields = fields
    ordering = ["-started_at"]
    verbose_name_plural = "recent refreshes"

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        recent = list(
            queryset.order_by("-started_at").values_list("pk", flat=True)[:200]
        )
        return queryset.filter(pk__in=recent)


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    form = SegmentForm
    list_display = ["name", "kind", "member_count", "last_refreshed_at", "sentence"]
    list_filter = ["kind"]
    search_fields = ["name", "description"]
    readonly_fields = ["sentence", "member_count", "last_refreshed_at"]
    inlines = [RefreshInline]
    change_form_template = "admin/segments/segment/change_form.html"
    actions = ["refresh_now"]

    def get_readonly_fields(self, request, obj=None):
        # On the add page the builder's live sentence says it; a stale one would not.
        return self.readonly_fields if obj else ["member_count", "last_refreshed_at"]

    @admin.display(description="condition")
    def sentence(self, obj: Segment) -> str:
        if not obj.is_dynamic:
            return "static list"
        return describe(obj.condition)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if obj.is_dynamic:
            segment_enqueue_refresh(obj)
            messages.info(
                request, f"“{obj.name}” is being computed; counts update in a moment."
            )

    def get_urls(self):
        editing = ("add", "change")
        return [
            path(
                "vocabulary/",
                guarded(self, self.vocabulary_view, editing),
                name="segments_segment_vocabulary",
            ),
            # Its sample names contacts.
            path(
                "preview/",
                guarded(self, self.preview_view, editing, "contacts.view_contact"),
                name="segments_segment_preview",
            ),
            # The members' emails and names.
            path(
                "<int:pk>/export/",
                guarded(self, self.export_view, "view", "contacts.view_contact"),
                name="segments_segment_export",
            ),
            path(
                "<int:pk>/upload/",
                guarded(self, self.upload_view, "change", "contacts.view_contact"),
                name="segments_segment_upload",
            ),
            *super().get_urls(),
        ]

    def render_change_form(self, request, context, *args, **kwargs):
        context["vocabulary_url"] = reverse("admin:segments_segment_vocabulary")
        context["preview_url"] = reverse("admin:segments_segment_preview")
        return super().render_change_form(request, context, *args, **kwargs)

    def vocabulary_view(self, request: HttpRequest) -> JsonResponse:
        """Event names and property keys seen in the data, attributes, segments."""
        return JsonResponse(vocabulary())

    def preview_view(self, request: HttpRequest) -> JsonResponse:
        """Live count, sample and English sentence for an unsaved condition."""
        try:
            condition = json.loads(request.body or b"{}")
        except (ValueError, RecursionError):  # RecursionError: nested too deep
            return JsonResponse({"valid": False, "errors": ["not JSON"]}, status=400)
        if not condition or (
            isinstance(condition, dict) and condition.get("all") == []
        ):
            return JsonResponse(
                {
                    "valid": True,
                    "errors": [],
                    "sentence": "Everyone",
                    "count": Contact.objects.count(),
                    "sample": [],
                }
            )
        try:
            condition = check(condition)
        except ConditionError as exc:
            return JsonResponse(
                {"valid": False, "errors": exc.errors, "sentence": describe(condition)}
            )
        sample = matching_contacts(condition).order_by("-last_seen_at", "-pk")[
            :SAMPLE_SIZE
        ]
        return JsonResponse(
            {
                "valid": True,
                "errors": [],
                "sentence": describe(condition),
                "count": count_matching(condition),
                "sample": [
                    {
                        "id": c.pk,
                        "label": str(c),
                        "name": c.full_name,
                        "url": reverse("admin:contacts_contact_change", args=[c.pk]),
                    }
                    for c in sample
                ],
            }
        )

    def export_view(self, request: HttpRequest, pk: int) -> StreamingHttpResponse:
        segment = get_object_or_404(Segment, pk=pk)
        members = (
            Contact.objects.filter(
                memberships__segment=segment, memberships__exited_at__isnull=True
            )
            .order_by("pk")
            .values_list(
                "pk",
                "email",
                "external_id",
                "first_name",
                "last_name",
                "memberships__entered_at",
            )
        )

        class Echo:
            def write(self, value):
                return value

        writer = csv.writer(Echo())

        def rows():
            yield writer.writerow(
                [
                    "contact_id",
                    "email",
                    "user_id",
                    "first_name",
                    "last_name",
                    "entered_at",
                ]
            )
            for row in members.iterator(chunk_size=2000):
                yield writer.writerow([_csv_safe(v) for v in row])

        response = StreamingHttpResponse(rows(), content_type="text/csv")
        response["Content-Disposition"] = (
            f'attachment; filename="segment-{segment.pk}.csv"'
        )
        return response

    def upload_view(self, request: HttpRequest, pk: int):
        segment = get_object_or_404(Segment, pk=pk)
        form = UploadForm(request.POST or None, request.FILES or None)
        report = None
        if request.method == "POST" and form.is_valid():
            try:
                report = segment_import_csv(
                    segment=segment,
                    data=form.cleaned_data["file"].read(),
                    remove=form.cleaned_data["action"] == "remove",
                )
            except ImportError_ as exc:
                form.add_error("file", str(exc))
            else:
                verb = "removed" if form.cleaned_data["action"] == "remove" else "added"
                messages.success(
                    request,
                    f"{report.added} contacts {verb}; {report.already} unchanged; "
                    f"{len(report.unmatched)} rows matched no contact.",
                )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Upload contacts to “{segment.name}”",
            "form": form,
            "segment": segment,
            "report": report,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/segments/segment/upload.html", context)

    @admin.action(
        permissions=["change"], description="Recompute the selected segments now"
    )
    def refresh_now(self, request, queryset):
        count = 0
        for segment in queryset.filter(kind=Segment.Kind.DYNAMIC):
            segment_enqueue_refresh(segment)
            count += 1
        self.message_user(request, f"{count} segments queued for a refresh.")


def _csv_safe(value):
    """Against formula injection: a cell starting = + - @ is text, not a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return "" if value is None else value


class UploadForm(forms.Form):
    file = forms.FileField(
        help_text="CSV: an email or user id a row (or a column headed email / user_id)."
    )
    action = forms.ChoiceField(
        choices=[("add", "Add to the list"), ("remove", "Remove from the list")]
    )


class ScoringRuleForm(forms.ModelForm):
    filters = forms.JSONField(required=False, initial=list)

    class Meta:
        model = ScoringRule
        fields = [
            "name",
            "event_name",
            "filters",
            "points",
            "cap_points",
            "cap_period_days",
            "active",
        ]

    def clean_filters(self):
        value = self.cleaned_data.get("filters") or []
        errors = filters_errors(value)
        if errors:
            raise forms.ValidationError(errors)
        return value

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("cap_points") and not cleaned.get("cap_period_days"):
            self.add_error("cap_period_days", "A cap needs a period (days).")
        return cleaned


@admin.register(ScoringRule)
class ScoringRuleAdmin(admin.ModelAdmin):
    form = ScoringRuleForm
    list_display = ["name", "event_name", "points", "cap", "active"]
    list_filter = ["active"]
    search_fields = ["name", "event_name"]

    @admin.display(description="cap")
    def cap(self, obj: ScoringRule) -> str:
        if not obj.cap_points:
            return "none"
        return f"{obj.cap_points} per {obj.cap_period_days} days"


# -- on the contact page and list ----------------------------------------------------


def segments_panel(request, contact) -> str:
    memberships = (
        SegmentMembership.objects.filter(contact=contact)
        .select_related("segment")
        .order_by("-entered_at")[:50]
    )
    return render_to_string(
        "admin/segments/segments_panel.html",
        {"memberships": memberships},
        request=request,
    )


class StaticListForm(forms.Form):
    segment = forms.ModelChoiceField(
        queryset=Segment.objects.filter(kind=Segment.Kind.STATIC)
    )
    # Not "action": the admin's own POST field for the action name is called that.
    operation = forms.ChoiceField(
        choices=[("add", "Add to the list"), ("remove", "Remove from the list")]
    )


# Changes the list (or the run), not the contacts: seeing them is enough here,
# with the other app's change permission (register_contact_action's needs).
@admin.action(permissions=["view"], description="Add to / remove from a static list…")
def add_to_static_list(modeladmin, request, queryset):
    form = StaticListForm(request.POST if "apply" in request.POST else None)
    if form.is_valid():
        segment = form.cleaned_data["segment"]
        ids = list(queryset.values_list("pk", flat=True))
        if form.cleaned_data["operation"] == "remove":
            count = segment_remove_contacts(segment=segment, contact_ids=ids)
            modeladmin.message_user(
                request, f"{count} contacts removed from “{segment}”."
            )
        else:
            count = segment_add_contacts(segment=segment, contact_ids=ids)
            modeladmin.message_user(request, f"{count} contacts added to “{segment}”.")
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Add to / remove from a static list",
        "form": form,
        "contacts": queryset,
        "opts": modeladmin.model._meta,
        "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/segments/static_list_action.html", context)


register_contact_action(add_to_static_list, needs=("segments.change_segment",))
