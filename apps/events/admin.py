import json
from urllib.parse import urlsplit

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db.models import Exists, OuterRef, Q, Subquery
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html

from apps.contacts.admin_search import CONTACT_HELP, LargeTableAdminMixin

from .auth import forget_cached_sources
from .models import Event, EventFailure, PendingEvent, Source
from .privacy import dropped_without_consent
from .processing import events_retry
from .services import source_rotate_key

TIMELINE_PAGE_SIZE = 25


def _origin_lines(value: list[str] | None) -> str:
    return "\n".join(value or [])


class OriginsField(forms.CharField):
    """One origin per line (scheme://host[:port]) <-> a JSON list."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60})

    def prepare_value(self, value):
        if isinstance(value, list):
            return _origin_lines(value)
        if isinstance(value, str) and value.startswith("["):
            try:
                return _origin_lines(json.loads(value))
            except ValueError:
                return value
        return value

    def to_python(self, value):
        origins = []
        for lineno, line in enumerate((value or "").splitlines(), start=1):
            line = line.strip().rstrip("/")
            if not line:
                continue
            parts = urlsplit(line)
            if parts.scheme not in {"http", "https"} or not parts.netloc or parts.path:
                raise forms.ValidationError(
                    f"line {lineno}: {line!r} is not an origin like https://shop.example.com"
                )
            origins.append(line)
        return origins


# Who may tick "privacy requests" (or rotate such a source's key): who may export,
# download and erase in admin themselves.
PRIVACY_PERMISSIONS = [
    "privacy.add_erasure",
    "privacy.add_dataexport",
    "privacy.download_dataexport",
]


class SourceForm(forms.ModelForm):
    allowed_origins = OriginsField(
        required=False,
        help_text="Sites whose browsers may send with this key, one per line, "
        "e.g. https://shop.example.com. Empty: any origin.",
    )

    class Meta:
        model = Source
        fields = [
            "name",
            "kind",
            "allowed_origins",
            "rate_limit_per_second",
            "double_opt_in",
            "privacy_requests",
            "consent_category",
            "consent_when_missing",
            "enabled",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Left out of a post (a script's, an older form's): the default, keep.
        self.fields["consent_when_missing"].required = False

    def clean(self):
        cleaned = super().clean()
        category = (cleaned.get("consent_category") or "").strip()
        cleaned["consent_category"] = category
        if not cleaned.get("consent_when_missing"):
            cleaned["consent_when_missing"] = Source.WhenConsentMissing.KEEP
        kind = cleaned.get("kind") or self.instance.kind
        if category and kind == Source.Kind.SERVER:
            self.add_error(
                "consent_category",
                "Calls with a server key are never gated: the server decides what "
                "to send. Leave this empty, or gate the site's browser source.",
            )
        if cleaned.get("privacy_requests") and kind != Source.Kind.SERVER:
            self.add_error(
                "privacy_requests",
                "Only a server source's secret key may export or erase people's "
                "data: a browser key is public.",
            )
        if (
            not category
            and cleaned.get("consent_when_missing") == Source.WhenConsentMissing.DROP
        ):
            self.add_error(
                "consent_when_missing",
                "Without a consent category nothing is gated: choose one first.",
            )
        return cleaned


class SourceChangeList(ChangeList):
    """The sources' page, with each one's count of events dropped for want of
    consent read from Redis once for the page."""

    def get_results(self, request):
        super().get_results(request)
        counts = dropped_without_consent([source.pk for source in self.result_list])
        for source in self.result_list:
            source.consent_dropped_count = (
                None if counts is None else counts.get(source.pk, 0)
            )


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    form = SourceForm
    list_display = [
        "name",
        "kind",
        "key_display",
        "enabled",
        "double_opt_in",
        "privacy_requests",
        "origins",
        "consent",
        "dropped_without_consent",
        "created_at",
    ]
    list_filter = ["kind", "enabled"]
    search_fields = ["name"]
    readonly_fields = [
        "key_display",
        "created_at",
        "key_rotated_at",
        "dropped_without_consent",
    ]
    actions = ["rotate_keys"]

    def get_changelist(self, request, **kwargs):
        return SourceChangeList

    def get_readonly_fields(self, request, obj=None):
        fields = list(self.readonly_fields)
        if obj:
            # The kind decides the key type; changing it later would orphan the key.
            fields.append("kind")
        if not request.user.has_perms(PRIVACY_PERMISSIONS):
            # The key would export and erase people: only who may do that in admin.
            fields.append("privacy_requests")
        return fields

    @admin.display(description="allowed origins")
    def origins(self, obj: Source) -> str:
        return ", ".join(obj.allowed_origins or []) or "any"

    @admin.display(description="consent required")
    def consent(self, obj: Source) -> str:
        if not obj.gates_consent:
            return "no"
        missing = (
            "kept"
            if obj.consent_when_missing == Source.WhenConsentMissing.KEEP
            else "dropped"
        )
        return f"{obj.consent_category} (calls without consent context {missing})"

    @admin.display(description="events dropped without consent")
    def dropped_without_consent(self, obj: Source) -> str:
        if not obj.pk:
            return "-"
        if hasattr(obj, "consent_dropped_count"):  # the changelist read them all
            count = obj.consent_dropped_count
        else:
            count = (dropped_without_consent([obj.pk]) or {}).get(obj.pk)
        # Counted in Redis (privacy.py): since Redis last started empty.
        return "unknown (Redis did not answer)" if count is None else f"{count:,}"

    def save_model(self, request, obj, form, change):
        if not change:
            key = obj.new_key()
            super().save_model(request, obj, form, change)
            self._show_key(request, obj, key)
        else:
            super().save_model(request, obj, form, change)
        forget_cached_sources()

    @admin.action(
        permissions=["change"],
        description="Rotate the write key of the selected sources",
    )
    def rotate_keys(self, request, queryset):
        for source in queryset:
            if source.privacy_requests and not request.user.has_perms(
                PRIVACY_PERMISSIONS
            ):
                # The new key would export and erase people (see get_readonly_fields).
                messages.warning(
                    request,
                    f"“{source.name}” may make privacy requests: only who may export "
                    "and erase people in admin can rotate its key. Left as it was.",
                )
                continue
            key = source_rotate_key(source=source)
            self._show_key(request, source, key)
        forget_cached_sources()

    def _show_key(self, request, source: Source, key: str) -> None:
        note = (
            " Copy it now: it is stored only as a hash and will not be shown again."
            if source.is_server
            else ""
        )
        messages.success(request, f"Write key for “{source.name}”: {key}.{note}")


@admin.register(Event)
class EventAdmin(LargeTableAdminMixin, admin.ModelAdmin):
    """The events table is the big one: nothing here reads all of it (see
    LargeTableAdminMixin). No date hierarchy (its year links are a DISTINCT over
    every timestamp), no filter on the event type (no index finds a rare one)."""

    list_display = [
        "name",
        "type",
        "contact",
        "timestamp",
        "received_at",
        "source",
        "processed",
    ]
    # Sources are few, and (source, message_id) is indexed.
    list_filter = ["source"]
    # Only shown in the search box; get_search_results says what is searched.
    search_fields = ["=name"]
    search_help_text = (
        f"Exact match: {CONTACT_HELP}, or an event name (e.g. order_completed)."
    )
    list_select_related = ["contact", "source"]
    readonly_fields = [
        "contact",
        "source",
        "type",
        "name",
        "properties_pretty",
        "context_pretty",
        "timestamp",
        "received_at",
        "message_id",
        "processed",
    ]
    exclude = ["properties", "context"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def exact_search_q(self, term: str) -> Q:
        # The event name through its (name, timestamp) index. (No messageId: the
        # partitioned table has no index on it, and the dedupe keys only know it
        # for NUDGE_EVENT_DEDUPE_DAYS.)
        return super().exact_search_q(term) | Q(name=term)

    def get_queryset(self, request):
        # one probe of the small queue table's primary key a row
        pending = PendingEvent.objects.filter(event_id=OuterRef("pk"))
        return super().get_queryset(request).annotate(pending=Exists(pending))

    @admin.display(boolean=True, description="processed")
    def processed(self, obj: Event) -> bool:
        return not obj.pending

    @admin.display(description="properties")
    def properties_pretty(self, obj: Event):
        return _pretty_json(obj.properties)

    @admin.display(description="context")
    def context_pretty(self, obj: Event):
        return _pretty_json(obj.context)


@admin.register(EventFailure)
class EventFailureAdmin(admin.ModelAdmin):
    """Events whose processing failed: waiting for another try, or set aside
    (dead-lettered) until someone retries them here."""

    list_display = [
        "event_link",
        "event_name",
        "contact_link",
        "status",
        "attempts",
        "error_summary",
        "last_failed_at",
        "retry_at",
    ]
    list_filter = ["status"]
    search_fields = ["=event_id"]
    ordering = ["-last_failed_at"]
    fields = [
        "event_link",
        "event_name",
        "contact_link",
        "status",
        "attempts",
        "first_failed_at",
        "last_failed_at",
        "retry_at",
        "error_pretty",
    ]
    readonly_fields = fields
    actions = ["retry_events"]

    def get_queryset(self, request):
        # No foreign key to the event (nothing points at Event rows): its name and
        # contact by the primary key, one probe each per row shown.
        event = Event.objects.filter(pk=OuterRef("event_id"))
        return (
            super()
            .get_queryset(request)
            .annotate(
                event_name=Subquery(event.values("name")[:1]),
                event_contact_id=Subquery(event.values("contact_id")[:1]),
            )
        )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.retry_eventfailure")

    @admin.action(
        permissions=["retry"], description="Retry the selected failed events now"
    )
    def retry_events(self, request, queryset):
        count = events_retry(event_ids=list(queryset.values_list("pk", flat=True)))
        noun = "event" if count == 1 else "events"
        messages.success(request, f"{count} {noun} will be tried again.")

    @admin.display(description="event", ordering="event_id")
    def event_link(self, obj: EventFailure):
        url = reverse("admin:events_event_change", args=[obj.event_id])
        return format_html('<a href="{}">#{}</a>', url, obj.event_id)

    @admin.display(description="name")
    def event_name(self, obj: EventFailure) -> str:
        return obj.event_name or "(event deleted)"

    @admin.display(description="contact")
    def contact_link(self, obj: EventFailure):
        if obj.event_contact_id is None:
            return "-"
        url = reverse("admin:contacts_contact_change", args=[obj.event_contact_id])
        return format_html('<a href="{}">#{}</a>', url, obj.event_contact_id)

    @admin.display(description="error")
    def error_summary(self, obj: EventFailure) -> str:
        # The exception's line, short enough for the list to fit; the whole
        # traceback is on the failure's page.
        lines = obj.error.strip().splitlines()
        last = lines[-1] if lines else ""
        return last if len(last) <= 80 else last[:79] + "…"

    @admin.display(description="error")
    def error_pretty(self, obj: EventFailure):
        return format_html(
            "<pre style='margin:0;white-space:pre-wrap'>{}</pre>", obj.error
        )


def _pretty_json(value) -> str:
    text = json.dumps(value or {}, indent=2, sort_keys=True, default=str)
    return format_html("<pre style='margin:0;white-space:pre-wrap'>{}</pre>", text)


def timeline_panel(request, contact) -> str:
    """The contact's events, newest first, paginated; values escaped by the template."""
    events = (
        Event.objects.filter(contact=contact)
        .select_related("source")
        .order_by("-timestamp", "-pk")
    )
    paginator = Paginator(events, TIMELINE_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("timeline_page"))
    rows = [
        {
            "event": event,
            "properties": json.dumps(event.properties, sort_keys=True, default=str),
            "url": (event.context.get("page") or {}).get("url", "")
            if isinstance(event.context.get("page"), dict)
            else "",
        }
        for event in page.object_list
    ]
    return render_to_string(
        "admin/events/timeline_panel.html",
        {"page": page, "rows": rows},
        request=request,
    )
