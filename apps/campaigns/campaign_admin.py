"""Campaigns in admin: the list (with its figures in one query a page), the edit
form of a draft (read-only once it is scheduled, with a banner saying why), its
variants inline, and the sending lanes. The pages beyond the form (review and
send, progress, pause / resume / cancel, the archive) are in campaign_pages.py."""

import copy

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import formats

from .campaign_pages import CampaignPages, panel_context
from .campaign_rules import setting_problems
from .models import Campaign, CampaignVariant, Message, SendingLane

Status = Campaign.Status


class CampaignForm(forms.ModelForm):
    class Meta:
        model = Campaign
        fields = [
            "name",
            "topic",
            "segments",
            "exclude_segments",
            "from_name",
            "from_email",
            "reply_to",
            "send_when",
            "send_at",
            "local_date",
            "local_time",
            "default_timezone",
            "window_start",
            "window_end",
            "rate_per_minute",
            "frequency_cap_max",
            "frequency_cap_hours",
            "ignore_frequency_cap",
            "test_percent",
            "winning_metric",
            "conversion_event",
            "conversion_window_hours",
            "revenue_property",
            "decide_after_hours",
            "no_winner",
            "holdout_percent",
        ]
        widgets = {
            "send_at": forms.SplitDateTimeWidget(
                date_attrs={"type": "date"}, time_attrs={"type": "time"}
            ),
            "local_date": forms.DateInput(attrs={"type": "date"}),
            "local_time": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "window_start": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "window_end": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "default_timezone": forms.TextInput(
                attrs={"list": "nudge-timezones", "autocomplete": "off"}
            ),
        }
        field_classes = {"send_at": forms.SplitDateTimeField}

    def clean(self):
        cleaned = super().clean()
        # The rules read a campaign: try them on a copy with the values entered
        # (the instance itself is only updated after clean()).
        probe = copy.copy(self.instance)
        for name, value in cleaned.items():
            if name not in ("segments", "exclude_segments"):
                setattr(probe, name, value)
        for name, sentence in setting_problems(probe):
            if name in self.fields and name in self.errors:
                continue  # already wrong for a reason of its own
            self.add_error(name if name in self.fields else None, sentence)
        both = set(cleaned.get("segments") or []) & set(
            cleaned.get("exclude_segments") or []
        )
        if both:
            self.add_error(
                "exclude_segments",
                "Sending to and excluding the same segment reaches nobody in it: "
                + ", ".join(sorted(s.name for s in both)),
            )
        return cleaned


class VariantFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        kept = [
            form
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]
        if self.instance.test_percent and len(kept) < 2:
            raise ValidationError(
                "An A/B test needs two or more variants: add one, or set the test "
                "share to 0."
            )


class VariantInline(admin.TabularInline):
    model = CampaignVariant
    formset = VariantFormSet
    fields = ["label", "template"]
    extra = 0
    min_num = 1
    validate_min = True
    verbose_name = "email (variant)"
    verbose_name_plural = "Email: one template, or two or more to A/B test"

    def has_add_permission(self, request, obj=None):
        return _draft(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return _draft(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return _draft(obj) and super().has_delete_permission(request, obj)


# What the send did: shown, never edited (the A/B test's only for a test). The
# status is in the banner, which follows it live.
OUTCOME = [
    "scheduled_by",
    "audience_count",
    "started_at",
    "test_sent_at",
    "decided_at",
    "winner",
    "verdict",
    "finished_at",
]
AB_OUTCOME = {"test_sent_at", "decided_at", "winner", "verdict"}


def _outcome(campaign: Campaign) -> list[str]:
    if campaign.test_percent:
        return OUTCOME
    return [name for name in OUTCOME if name not in AB_OUTCOME]


def _draft(obj: Campaign | None) -> bool:
    return obj is None or obj.status == Status.DRAFT


def _message_count(**only) -> Coalesce:
    """A campaign's real (not test) messages that ``only`` says, as a subquery."""
    counted = (
        Message.objects.filter(campaign_id=OuterRef("pk"), is_test=False)
        .filter(Q(**only))
        .order_by()
        .values("campaign_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    form = CampaignForm
    inlines = [VariantInline]
    list_display = [
        "name",
        "status",
        "audience",
        "sent",
        "open_rate",
        "click_rate",
        "when",
    ]
    list_filter = ["status", "topic"]
    search_fields = ["name"]
    list_select_related = ["topic"]
    filter_horizontal = ["segments", "exclude_segments"]
    change_form_template = "admin/campaigns/campaign/change_form.html"
    fieldsets = [
        (None, {"fields": ["name", "topic"]}),
        ("Audience", {"fields": ["segments", "exclude_segments"]}),
        (
            "Sender",
            {
                "fields": ["from_name", "from_email", "reply_to"],
                "description": "Empty fields use the template's own.",
            },
        ),
        (
            "When",
            {
                "fields": [
                    "send_when",
                    "send_at",
                    ("local_date", "local_time"),
                    "default_timezone",
                    ("window_start", "window_end"),
                ],
                "description": "Now, at one time for everyone (UTC), or at a "
                "local time in each person's own time zone. The send window is "
                "each person's local time too.",
            },
        ),
        (
            "Pace and frequency cap",
            {
                "fields": [
                    "rate_per_minute",
                    ("frequency_cap_max", "frequency_cap_hours"),
                    "ignore_frequency_cap",
                ]
            },
        ),
        (
            "A/B test and holdout",
            {
                "fields": [
                    "test_percent",
                    "winning_metric",
                    ("conversion_event", "conversion_window_hours"),
                    "revenue_property",
                    "decide_after_hours",
                    "no_winner",
                    "holdout_percent",
                ],
                "description": "Optional. With two or more variants and a test "
                "share, the variants go to the test share first and the winner "
                "to the rest. A holdout gets nothing, to measure the lift.",
            },
        ),
    ]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                sent_count=_message_count(status=Message.Status.SENT),
                opened_count=_message_count(
                    status=Message.Status.SENT, opened_at__isnull=False
                ),
                clicked_count=_message_count(
                    status=Message.Status.SENT, clicked_at__isnull=False
                ),
            )
        )

    def get_fieldsets(self, request, obj=None):
        if _draft(obj):
            return self.fieldsets
        return [("What happened", {"fields": _outcome(obj)}), *self.fieldsets]

    def get_readonly_fields(self, request, obj=None):
        return [] if _draft(obj) else OUTCOME

    def has_change_permission(self, request, obj=None):
        # Only a draft is edited: once scheduled its settings are what it does.
        return _draft(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        # A campaign on its way is cancelled first (so its queued messages stop).
        live = obj is not None and obj.status in (
            Status.SCHEDULED,
            Status.SENDING,
            Status.PAUSED,
        )
        return not live and super().has_delete_permission(request, obj)

    def get_urls(self):
        return [*CampaignPages(self).urls(), *super().get_urls()]

    def render_change_form(self, request, context, *args, obj=None, **kwargs):
        if obj is not None:
            context.update(panel_context(request, self, obj))
        return super().render_change_form(request, context, *args, obj=obj, **kwargs)

    def save_model(self, request, obj, form, change):
        if not change:
            return super().save_model(request, obj, form, change)
        # Only a draft's settings change, and only them: a campaign scheduled or
        # started while this form was open keeps its status and what its send has
        # recorded (a whole-row save would put it back to draft mid-send).
        with transaction.atomic():
            status = (
                Campaign.objects.select_for_update()
                .filter(pk=obj.pk)
                .values_list("status", flat=True)
                .first()
            )
            if status != Status.DRAFT:
                raise PermissionDenied(
                    "This campaign was scheduled while you edited it: its settings "
                    "can no longer be changed."
                )
            obj.save(
                update_fields=[
                    f.name
                    for f in Campaign._meta.concrete_fields
                    if f.name in form.fields
                ]
            )

    def response_add(self, request, obj, post_url_continue=None):
        # A new campaign's next step is its review, not the list.
        if "_continue" not in request.POST and "_addanother" not in request.POST:
            return CampaignPages.redirect_to_review(obj)
        return super().response_add(request, obj, post_url_continue)

    @admin.display(description="sending (UTC)", ordering="started_at")
    def when(self, obj: Campaign) -> str:
        if not obj.started_at:
            return "—"
        finished = obj.finished_at
        if finished and finished.date() == obj.started_at.date():
            return f"{_short(obj.started_at)} → {finished:%H:%M}"
        return f"{_short(obj.started_at)} → {_short(finished) or '…'}"

    @admin.display(description="audience")
    def audience(self, obj: Campaign):
        return obj.audience_count if obj.audience_count is not None else "—"

    @admin.display(description="sent", ordering="sent_count")
    def sent(self, obj: Campaign) -> int:
        return obj.sent_count

    @admin.display(description="open rate", ordering="opened_count")
    def open_rate(self, obj: Campaign) -> str:
        return _percent(obj.opened_count, obj.sent_count)

    @admin.display(description="click rate", ordering="clicked_count")
    def click_rate(self, obj: Campaign) -> str:
        return _percent(obj.clicked_count, obj.sent_count)


def _short(at) -> str:
    return formats.date_format(at, "j M Y H:i") if at else ""


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "—"


@admin.register(SendingLane)
class SendingLaneAdmin(admin.ModelAdmin):
    """Shared limits per sending domain ("*" = all email): an operator's setting,
    so in no role but Admin."""

    list_display = ["name", "per_minute", "next_slot_at"]
    search_fields = ["name"]
    fields = ["name", "per_minute", "next_slot_at"]
    readonly_fields = ["next_slot_at"]
