import json

from django import forms
from django.contrib import admin
from django.utils.html import format_html

from .identity import normalize_email
from .models import Contact, ContactMerge, Identity
from .panels import contact_actions, contact_panels


class IdentityInline(admin.TabularInline):
    model = Identity
    extra = 0
    fields = ["anonymous_id", "created_at"]
    readonly_fields = ["anonymous_id", "created_at"]
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False


class ContactForm(forms.ModelForm):
    class Meta:
        model = Contact
        fields = [
            "email",
            "external_id",
            "first_name",
            "last_name",
            "phone",
            "email_consent",
            "timezone",
            "locale",
            "score",
            "attributes",
        ]

    def clean_email(self):
        return normalize_email(self.cleaned_data.get("email"))

    def clean_external_id(self):
        return (self.cleaned_data.get("external_id") or "").strip() or None

    def clean_attributes(self):
        value = self.cleaned_data.get("attributes")
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError(
                'Attributes must be a JSON object, e.g. {"plan": "pro"}.'
            )
        return value


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    form = ContactForm
    list_display = [
        "__str__",
        "full_name_display",
        "external_id",
        "email_consent",
        "score",
        "last_seen_at",
        "created_at",
    ]
    list_filter = ["email_consent", "created_at", "last_seen_at"]
    search_fields = ["email", "first_name", "last_name", "external_id"]
    readonly_fields = [
        "created_at",
        "first_seen_at",
        "last_seen_at",
        "attributes_pretty",
    ]
    fieldsets = [
        (
            None,
            {"fields": ["email", "external_id", "first_name", "last_name", "phone"]},
        ),
        ("Preferences", {"fields": ["email_consent", "timezone", "locale", "score"]}),
        ("Attributes", {"fields": ["attributes_pretty", "attributes"]}),
        ("Activity", {"fields": ["created_at", "first_seen_at", "last_seen_at"]}),
    ]
    inlines = [IdentityInline]
    show_full_result_count = False
    change_form_template = "admin/contacts/contact/change_form.html"

    @admin.display(description="name", ordering="last_name")
    def full_name_display(self, obj: Contact) -> str:
        return obj.full_name

    @admin.display(description="attributes (read-only view)")
    def attributes_pretty(self, obj: Contact):
        text = json.dumps(obj.attributes or {}, indent=2, sort_keys=True, default=str)
        return format_html("<pre style='margin:0'>{}</pre>", text)

    @property
    def actions(self):
        # Other apps add actions ("add to a static list", "enroll in a workflow").
        return contact_actions()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        contact = self.get_object(request, object_id)
        if contact is not None:
            extra_context["panels"] = [
                {"title": p.title, "key": p.key, "html": p.render(request, contact)}
                for p in contact_panels()
            ]
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(ContactMerge)
class ContactMergeAdmin(admin.ModelAdmin):
    list_display = ["merged_contact_id", "into", "reason", "moved", "merged_at"]
    list_select_related = ["into"]
    search_fields = ["into__email", "=merged_contact_id"]
    readonly_fields = [f.name for f in ContactMerge._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
