"""Email consent in admin: the contact page's panel, and the page that changes it.

Consent is changed only through contact_set_consent (its precedence, the address
list, the event and the consent record it writes), never as a plain field: tightening
is one click; lowering (resubscribing someone, lifting a bounce or a complaint) needs
a reason, which is recorded with the staff user and their IP.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path

from apps.contacts.consent import ConsentProof, Source
from apps.contacts.models import CONSENT_STRICTNESS, ConsentStatus, Contact
from apps.contacts.suppression import address_suppression
from apps.core.ip import client_ip

from .services import contact_set_consent


class ConsentForm(forms.Form):
    status = forms.ChoiceField(choices=ConsentStatus.choices)
    reason = forms.CharField(
        max_length=200,
        required=False,
        help_text="Required to lower it: who asked, when and how (it is recorded).",
    )

    def __init__(self, *args, contact: Contact, **kwargs):
        super().__init__(*args, **kwargs)
        self.contact = contact
        self.fields["status"].initial = contact.email_consent

    def clean(self):
        cleaned = super().clean()
        status = cleaned.get("status")
        lowering = CONSENT_STRICTNESS.get(status, 0) < CONSENT_STRICTNESS.get(
            self.contact.email_consent, 0
        )
        cleaned["lift"] = lowering
        if lowering and not (cleaned.get("reason") or "").strip():
            self.add_error(
                "reason",
                f"Say why: the contact is {self.contact.email_consent}, and lowering "
                "that (above all a bounce or a complaint) must be justified.",
            )
        return cleaned


def consent_urls(model_admin: admin.ModelAdmin):
    def view(request, contact_id: int):
        if not request.user.has_perm("contacts.change_contact"):
            raise PermissionDenied
        contact = get_object_or_404(Contact, pk=contact_id)
        form = ConsentForm(request.POST or None, contact=contact)
        if request.method == "POST" and form.is_valid():
            reason = form.cleaned_data["reason"].strip() or "changed in admin"
            username = request.user.get_username()
            changed = contact_set_consent(
                contact=contact,
                status=form.cleaned_data["status"],
                reason=f"admin ({username}): {reason}",
                proof=ConsentProof(
                    source=Source.STAFF,
                    who=username,
                    ip=client_ip(request.META),
                    form="admin: change email consent",
                    wording=reason,
                ),
                lift=form.cleaned_data["lift"],
            )
            messages.success(
                request,
                f"Email consent is now {contact.email_consent}."
                if changed
                else "Nothing changed.",
            )
            return redirect("admin:contacts_contact_change", contact.pk)
        context = {
            **model_admin.admin_site.each_context(request),
            "title": f"Email consent of {contact}",
            "form": form,
            "contact": contact,
            "suppression": address_suppression(contact.email),
            "opts": Contact._meta,
        }
        return TemplateResponse(request, "admin/campaigns/consent.html", context)

    return [
        path(
            "consent/<int:contact_id>/",
            model_admin.admin_site.admin_view(view),
            name="campaigns_contact_consent",
        )
    ]


def consent_panel(request, contact) -> str:
    return render_to_string(
        "admin/campaigns/consent_panel.html",
        {
            "contact": contact,
            "suppression": address_suppression(contact.email),
            "can_change": request.user.has_perm("contacts.change_contact"),
        },
        request=request,
    )
