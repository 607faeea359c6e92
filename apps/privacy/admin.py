"""Privacy in admin: the contact page's panel (export, erase), the erasure
confirmation page, the export download, and the read-only records."""

from django import forms
from django.contrib import admin, messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from apps.contacts.models import Contact
from apps.core import clock
from apps.core.permissions import guarded

from .erasure import ErasureRefused, erasure_request
from .exports import ExportUnavailable, export_archive, export_request
from .models import DataExport, Erasure

DOWNLOAD = "privacy.download_dataexport"


class ReadOnly(admin.ModelAdmin):
    """Records: nobody adds, edits or deletes them by hand."""

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Erasure)
class ErasureAdmin(ReadOnly):
    list_display = [
        "contact_id",
        "status",
        "requested_by",
        "reason",
        "rows",
        "mail_files",
        "requested_at",
        "finished_at",
    ]
    list_filter = ["status"]
    readonly_fields = [f.name for f in Erasure._meta.fields]

    @admin.display(description="rows removed or emptied")
    def rows(self, erasure: Erasure) -> int:
        return sum(v for v in erasure.removed.values() if isinstance(v, int))

    @admin.display(description="mail files")
    def mail_files(self, erasure: Erasure) -> str:
        if not erasure.mail_files_pending:
            return "scrubbed" if "mail_files" in erasure.removed else "-"
        if erasure.mail_files_failed_at is None:
            return "to scrub"
        # (the log says why; the tick tries again)
        return f"to scrub, failed {erasure.mail_files_failed_at:%Y-%m-%d %H:%M}"

    def has_add_permission(self, request):
        # Erasing starts from the contact's page (the "add" permission is the right
        # to erase), never from an empty form here.
        return False

    def get_urls(self):
        return [
            path(
                "erase/<int:contact_id>/",
                guarded(self, self.erase_view, "privacy.add_erasure"),
                name="privacy_erasure_erase",
            ),
            *super().get_urls(),
        ]

    def erase_view(self, request, contact_id: int):
        contact = get_object_or_404(Contact, pk=contact_id, erased_at__isnull=True)
        form = EraseForm(request.POST or None, contact=contact)
        if request.method == "POST" and form.is_valid():
            try:
                erasure = erasure_request(
                    contact=contact,
                    requested_by=f"staff {request.user.get_username()}",
                    reason=form.cleaned_data["reason"],
                )
            except ErasureRefused as exc:
                messages.error(request, str(exc))
            else:
                if erasure.status == Erasure.Status.DONE:
                    messages.success(request, f"Contact #{contact_id} was erased.")
                else:
                    messages.warning(
                        request,
                        f"Contact #{contact_id}: nothing more will be sent; an email "
                        "is being handed to the ESP right now, so the erasure "
                        "finishes as soon as it is out.",
                    )
            return redirect("admin:privacy_erasure_changelist")
        return TemplateResponse(
            request,
            "admin/privacy/erase.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Erase {contact}",
                "contact": contact,
                "form": form,
                "opts": self.model._meta,
            },
        )


class EraseForm(forms.Form):
    confirm = forms.CharField(
        label="Type the contact's number to confirm",
        help_text="Erasing cannot be undone.",
    )
    reason = forms.CharField(
        max_length=300,
        widget=forms.TextInput(attrs={"size": 60}),
        help_text="Who asked and how (kept in the erasure record; no personal data).",
    )

    def __init__(self, *args, contact: Contact, **kwargs):
        super().__init__(*args, **kwargs)
        self.contact = contact

    def clean_confirm(self):
        value = self.cleaned_data["confirm"].strip().lstrip("#")
        if value != str(self.contact.pk):
            raise forms.ValidationError(
                f"Type {self.contact.pk}, this contact's number, to confirm."
            )
        return value


@admin.register(DataExport)
class DataExportAdmin(ReadOnly):
    list_display = ["contact", "status", "progress", "requested_by", "requested_at"]
    list_filter = ["status"]
    list_select_related = ["contact"]
    readonly_fields = [f.name for f in DataExport._meta.fields]

    def has_add_permission(self, request):
        return False

    @admin.display(description="progress")
    def progress(self, export: DataExport) -> str:
        return _progress(export)

    def get_urls(self):
        return [
            path(
                "request/<int:contact_id>/",
                guarded(
                    self, require_POST(self.request_view), "privacy.add_dataexport"
                ),
                name="privacy_dataexport_request",
            ),
            path(
                "<int:export_id>/download/",
                guarded(self, self.download_view, DOWNLOAD),
                name="privacy_dataexport_download",
            ),
            *super().get_urls(),
        ]

    def request_view(self, request, contact_id: int):
        contact = get_object_or_404(Contact, pk=contact_id, erased_at__isnull=True)
        export_request(
            contact=contact, requested_by=f"staff {request.user.get_username()}"
        )
        messages.success(
            request,
            "The export is being built; its download link appears in the Privacy "
            "panel when it is ready.",
        )
        return redirect(reverse("admin:contacts_contact_change", args=[contact_id]))

    def download_view(self, request, export_id: int):
        export = get_object_or_404(DataExport, pk=export_id)
        try:
            return export_archive(export)
        except ExportUnavailable as exc:
            raise Http404(str(exc)) from exc


def _progress(export: DataExport) -> str:
    if export.status == DataExport.Status.BUILDING:
        return (
            f"{export.sections_done} of {export.sections_total} tables, "
            f"{_rows(export.rows)}"
        )
    if export.status == DataExport.Status.READY:
        return f"{_rows(export.rows)}, {export.size_bytes / 1024:,.0f} KB"
    return export.get_status_display()


def _rows(count: int) -> str:
    return f"{count:,} row" if count == 1 else f"{count:,} rows"


def privacy_panel(request, contact) -> str:
    user = request.user
    exports = list(DataExport.objects.filter(contact=contact)[:5])
    for export in exports:
        export.progress = _progress(export)
    return render_to_string(
        "admin/privacy/panel.html",
        {
            "contact": contact,
            "exports": exports,
            "can_export": user.has_perm("privacy.add_dataexport"),
            "can_download": user.has_perm(DOWNLOAD),
            "can_erase": user.has_perm("privacy.add_erasure"),
            "now": clock.now(),
        },
        request=request,
    )
