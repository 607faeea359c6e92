"""Test sends from admin: a template's, a campaign's. The form and the one place
that turns it into a test message (services.message_create_test)."""

from django import forms
from django.contrib import messages

from apps.contacts.models import Contact
from apps.core.permissions import require

from .models import Message
from .services import message_create_test

PREVIEW_CONTACTS = 50


def sample_contacts():
    return Contact.objects.exclude(email__isnull=True).order_by("-last_seen_at", "-pk")[
        :PREVIEW_CONTACTS
    ]


def send_test_from_form(
    request, model_admin, form, *, template, topic=None, render_context=None
) -> Message:
    """Queue the test a valid TestSendForm asks for, and say so. Personalised as a
    real contact only for those who may see contacts; else as a sample person
    (with no address of their own: the test goes to the address given)."""
    if form.cleaned_data["contact"]:
        require(request, model_admin, "contacts.view_contact")
    contact = form.cleaned_data["contact"] or Contact(
        first_name="Sample", email=form.cleaned_data["to_email"]
    )
    if contact.pk is None:
        contact.email = None
        contact.save()
    message = message_create_test(
        template=template,
        contact=contact,
        to_email=form.cleaned_data["to_email"],
        topic=topic,
        render_context=render_context,
    )
    messages.success(
        request,
        f"Test of “{template.name}” queued to {form.cleaned_data['to_email']} "
        "(marked as a test: it does not count in reports).",
    )
    return message


class TestSendForm(forms.Form):
    to_email = forms.EmailField(label="Send to", help_text="Your own address.")
    contact = forms.ModelChoiceField(
        queryset=Contact.objects.none(),
        required=False,
        help_text="Personalise as this contact (empty: sample data).",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["contact"].queryset = Contact.objects.filter(
            pk__in=[c.pk for c in sample_contacts()]
        )
