"""Proof of consent in admin: the history list (read-only, for the DPO: every
contact's changes in one place) and the contact page's "Consent history" panel."""

from django.contrib import admin
from django.template.loader import render_to_string

from .models import ConsentRecord

# The panel shows the latest changes; the list has them all, filtered by contact.
PANEL_ROWS = 50


@admin.register(ConsentRecord)
class ConsentRecordAdmin(admin.ModelAdmin):
    """Written by contacts.consent.consent_record only, never edited or deleted here
    (erasing the person deletes theirs)."""

    list_display = [
        "at",
        "contact",
        "subject",
        "previous",
        "value",
        "source",
        "who",
        "ip",
        "form",
    ]
    list_filter = ["source", "value", "at"]
    list_select_related = ["contact"]
    search_fields = ["contact__email", "=contact__id", "topic", "who", "form"]
    date_hierarchy = "at"
    readonly_fields = [f.name for f in ConsentRecord._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="what")
    def subject(self, obj: ConsentRecord) -> str:
        return obj.subject


def consent_history_panel(request, contact) -> str:
    """Every change of the contact's email consent and topic choices, newest
    first: when, what, from -> to, where from, who, IP, the form and wording."""
    allowed = request.user.has_perm("contacts.view_consentrecord")
    records = (
        list(ConsentRecord.objects.filter(contact=contact)[: PANEL_ROWS + 1])
        if allowed
        else []
    )
    return render_to_string(
        "admin/contacts/consent_history_panel.html",
        {
            "allowed": allowed,
            "records": records[:PANEL_ROWS],
            "more": len(records) > PANEL_ROWS,
            "contact": contact,
        },
        request=request,
    )
