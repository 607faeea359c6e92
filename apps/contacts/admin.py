import json

from django import forms
from django.contrib import admin
from django.contrib.admin.options import ActionLocation
from django.db.models import Q
from django.utils.html import format_html

from apps.core.ip import client_ip
from apps.core.paging import LargeTablePaginator

from . import consent_admin  # noqa: F401  (registers the consent history)
from .admin_search import CONTACT_HELP, LargeTableAdminMixin
from .consent import ConsentProof, Source, consent_record
from .identity import normalize_email
from .models import (
    SUPPRESSION_FOR_CONSENT,
    Contact,
    ContactMerge,
    Identity,
    SuppressedAddress,
)
from .panels import contact_actions, contact_panels
from .suppression import (
    address_follow_consent,
    address_suppress,
    address_suppression,
    addresses_lift,
)


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

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Consent changes go through the consent page (its rules and its record),
        # never a plain field edit: see the contact's "Email consent" panel.
        if self.instance.pk and "email_consent" in self.fields:
            self.fields["email_consent"].disabled = True
            self.fields["email_consent"].help_text = (
                "Change it with “Change email consent” in the Email consent panel "
                "below: a bounce or complaint is lifted only with a reason."
            )

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
    # Contacts grow with traffic (anonymous visitors): no COUNT(*) of them all, and
    # no facet counts. Search stays by part of a name or address (a scan of
    # contacts, not of events).
    paginator = LargeTablePaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    change_form_template = "admin/contacts/contact/change_form.html"

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        # A contact added as unsubscribed (or complained, bounced): the address
        # list keeps it, as it does for every other way consent is set. Lifting
        # an address's suppression is the consent page's job, never a new row's.
        if not change:
            # The consent it was added with is recorded, as every consent is.
            consent_record(
                contact_id=obj.pk,
                previous="",
                value=obj.email_consent,
                proof=ConsentProof(
                    source=Source.STAFF,
                    who=request.user.get_username(),
                    ip=client_ip(request.META),
                    form="admin: add contact",
                ),
            )
        if not change and obj.email_consent in SUPPRESSION_FOR_CONSENT:
            address_follow_consent(
                email=obj.email,
                status=obj.email_consent,
                detail=f"contact added in admin by {request.user}",
            )

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

    def get_actions(self, request, action_location=ActionLocation.CHANGE_LIST):
        return {
            name: action
            for name, action in super().get_actions(request, action_location).items()
            if request.user.has_perms(getattr(action.func, "needs", ()))
        }

    def has_delete_permission(self, request, obj=None):
        # Deleting the row would leave the person's data behind (merge snapshots,
        # ESP payloads, webhook bodies, mail files) and lose the report counts:
        # the contact page's Privacy panel erases them instead (apps/privacy).
        return False

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
class ContactMergeAdmin(LargeTableAdminMixin, admin.ModelAdmin):
    """One row per identify that joins two people: it grows with traffic."""

    list_display = ["merged_contact_id", "into", "reason", "moved", "merged_at"]
    list_select_related = ["into"]
    # Only shown in the search box; LargeTableAdminMixin says what is searched.
    search_fields = ["=merged_contact_id"]
    search_help_text = f"Exact match: {CONTACT_HELP} it was merged into, or its id."
    contact_search = "into"
    readonly_fields = [f.name for f in ContactMerge._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def exact_search_q(self, term: str) -> Q:
        if term.isdigit() and len(term) < 19:
            return Q(merged_contact_id=int(term))
        return Q(pk__in=[])


class SuppressedAddressForm(forms.ModelForm):
    email = forms.EmailField(
        help_text="Stored only as a hash: the list cannot be read back as addresses."
    )

    class Meta:
        model = SuppressedAddress
        fields = ["reason", "detail"]

    def clean_email(self):
        email = normalize_email(self.cleaned_data.get("email"))
        if address_suppression(email) is not None:
            raise forms.ValidationError("This address is on the list already.")
        return email


@admin.register(SuppressedAddress)
class SuppressedAddressAdmin(admin.ModelAdmin):
    """The address-level suppression list: checked at send time on every path."""

    form = SuppressedAddressForm
    list_display = ["__str__", "reason", "detail", "created_at", "updated_at"]
    list_filter = ["reason", "created_at"]
    search_fields = ["=email_hash", "hint"]
    readonly_fields = ["hint", "email_hash", "created_at", "updated_at"]
    actions = ["lift"]

    def get_actions(self, request, action_location=ActionLocation.CHANGE_LIST):
        actions = super().get_actions(request, action_location=action_location)
        actions.pop("delete_selected", None)  # "lift" says what deleting means
        return actions

    def get_search_results(self, request, queryset, search_term):
        # Search by the address itself: it is hashed here as it is stored.
        if "@" in search_term:
            from .models import email_hash

            return queryset.filter(email_hash=email_hash(search_term)), False
        return super().get_search_results(request, queryset, search_term)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["email", "reason", "detail"]
        return ["hint", "email_hash", "reason", "detail", "created_at", "updated_at"]

    def has_change_permission(self, request, obj=None):
        return False if obj is not None else super().has_change_permission(request)

    def save_model(self, request, obj, form, change):
        address_suppress(
            email=form.cleaned_data["email"],
            reason=obj.reason,
            detail=obj.detail or f"added by {request.user}",
        )
        saved = address_suppression(form.cleaned_data["email"])
        obj.pk, obj.email_hash = saved.pk, saved.email_hash

    def delete_model(self, request, obj):
        addresses_lift(entries=[obj], why=f"deleted in admin by {request.user}")

    def delete_queryset(self, request, queryset):
        addresses_lift(
            entries=list(queryset), why=f"deleted in admin by {request.user}"
        )

    @admin.action(
        permissions=["delete"], description="Lift the suppression of these addresses"
    )
    def lift(self, request, queryset):
        count = addresses_lift(
            entries=list(queryset), why=f"lifted in admin by {request.user}"
        )
        self.message_user(request, f"{count} addresses may receive email again.")
