from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from liquid.exceptions import LiquidError

from apps.contacts.admin_search import CONTACT_HELP, LargeTableAdminMixin
from apps.contacts.models import Contact
from apps.core.permissions import guarded, require

from . import (  # noqa: F401  (register their models)
    campaign_admin,
    topic_admin,
)
from .consent_admin import consent_urls
from .context import build_context
from .delivery import message_render
from .models import EmailLayout, EmailTemplate, Message
from .rendering import HTML_ENV, RenderError, liquid_error, render_email
from .testsends import TestSendForm, sample_contacts, send_test_from_form
from .validation import check_template


class EmailLayoutForm(forms.ModelForm):
    class Meta:
        model = EmailLayout
        fields = ["name", "html", "is_default"]

    def clean_html(self):
        html = self.cleaned_data["html"]
        try:
            template = HTML_ENV.from_string(html)
        except LiquidError as exc:
            raise ValidationError(str(liquid_error(exc, "layout", html))) from None
        names = set(template.global_variables())
        missing = [n for n in ("content", "unsubscribe_url") if n not in names]
        if missing:
            raise ValidationError(
                "The layout must use "
                + " and ".join(f"{{{{ {n} }}}}" for n in missing)
                + ": the body goes in {{ content }}, and every marketing email needs a "
                "visible unsubscribe link."
            )
        return html


@admin.register(EmailLayout)
class EmailLayoutAdmin(admin.ModelAdmin):
    form = EmailLayoutForm
    list_display = ["name", "is_default", "updated_at"]

    def save_model(self, request, obj, form, change):
        if obj.is_default:
            # One default at a time: the new one takes over.
            EmailLayout.objects.exclude(pk=obj.pk).filter(is_default=True).update(
                is_default=False
            )
        super().save_model(request, obj, form, change)


class EmailTemplateForm(forms.ModelForm):
    tags = forms.CharField(
        required=False, help_text="Comma-separated, e.g. cart, reminder"
    )

    class Meta:
        model = EmailTemplate
        fields = [
            "name",
            "subject",
            "preheader",
            "html_body",
            "text_body",
            "layout",
            "from_name",
            "from_email",
            "reply_to",
            "tags",
            "track_clicks",
        ]
        widgets = {
            "html_body": forms.Textarea(
                attrs={"rows": 18, "class": "vLargeTextField nudge-code"}
            ),
            "text_body": forms.Textarea(
                attrs={"rows": 6, "class": "vLargeTextField nudge-code"}
            ),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance and isinstance(self.instance.tags, list):
            self.initial["tags"] = ", ".join(self.instance.tags)
        self.warnings: list[str] = []

    def clean_tags(self):
        raw = self.cleaned_data.get("tags") or ""
        return [t.strip() for t in raw.split(",") if t.strip()]

    def clean(self):
        cleaned = super().clean()
        layout = (
            cleaned.get("layout") or EmailLayout.objects.filter(is_default=True).first()
        )
        check = check_template(
            fields={
                k: cleaned.get(k) or ""
                for k in ("subject", "preheader", "html_body", "text_body")
            },
            layout_html=layout.html if layout else None,
            sample_contact=sample_contacts().first(),
        )
        for field_name, problems in check.errors.items():
            for problem in problems:
                self.add_error(
                    field_name if field_name in self.fields else None, problem
                )
        self.warnings = check.warnings
        return cleaned


@admin.register(EmailTemplate)
class EmailTemplateAdmin(admin.ModelAdmin):
    form = EmailTemplateForm
    list_display = ["name", "subject", "layout", "tag_list", "updated_at"]
    list_filter = ["layout"]
    search_fields = ["name", "subject"]
    change_form_template = "admin/campaigns/emailtemplate/change_form.html"
    actions = ["send_test"]

    @admin.display(description="tags")
    def tag_list(self, obj: EmailTemplate) -> str:
        return ", ".join(obj.tags or [])

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        for warning in getattr(form, "warnings", []):
            messages.warning(request, warning)

    def get_urls(self):
        return [
            path(
                "preview/",
                guarded(self, self.preview_view, ("add", "change")),
                name="campaigns_emailtemplate_preview",
            ),
            path(
                "<int:pk>/test-send/",
                guarded(self, self.test_send_view, "change"),
                name="campaigns_emailtemplate_test_send",
            ),
            *super().get_urls(),
        ]

    def render_change_form(self, request, context, *args, **kwargs):
        # Real contacts to render for: only for those who may see contacts.
        context["sample_contacts"] = (
            sample_contacts()
            if request.user.has_perm("contacts.view_contact")
            else Contact.objects.none()
        )
        context["preview_url"] = reverse("admin:campaigns_emailtemplate_preview")
        return super().render_change_form(request, context, *args, **kwargs)

    def preview_view(self, request: HttpRequest) -> JsonResponse:
        """The live preview: render the posted fields (saved or not) for a contact."""
        if request.method != "POST":
            return JsonResponse({"error": "POST the template fields"}, status=405)
        contact = None
        if request.POST.get("contact"):
            # a real contact's data: only for those who may see contacts
            require(request, self, "contacts.view_contact")
            contact = Contact.objects.filter(pk=request.POST["contact"]).first()
        layout = EmailLayout.objects.filter(pk=request.POST.get("layout") or 0).first()
        layout = layout or EmailLayout.objects.filter(is_default=True).first()
        context = build_context(
            contact=contact or Contact(first_name="Sample", email="sample@example.com"),
            message_id=None,
            is_test=True,  # a click in the preview changes nothing for the contact
        )
        try:
            rendered = render_email(
                subject=request.POST.get("subject", ""),
                preheader=request.POST.get("preheader", ""),
                html_body=request.POST.get("html_body", ""),
                text_body=request.POST.get("text_body", ""),
                layout_html=layout.html if layout else None,
                context=context,
            )
        except RenderError as exc:
            return JsonResponse({"error": str(exc), "field": exc.field})
        return JsonResponse(
            {"subject": rendered.subject, "html": rendered.html, "text": rendered.text}
        )

    def test_send_view(self, request: HttpRequest, pk: int):
        template = get_object_or_404(EmailTemplate, pk=pk)
        form = TestSendForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            send_test_from_form(request, self, form, template=template)
            return redirect("admin:campaigns_emailtemplate_change", template.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Send a test of “{template.name}”",
            "form": form,
            "template": template,
            "opts": self.model._meta,
        }
        return TemplateResponse(
            request, "admin/campaigns/emailtemplate/test_send.html", context
        )

    @admin.action(
        permissions=["change"], description="Send a test email of the selected template"
    )
    def send_test(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(
                request, "Pick one template to test.", level=messages.WARNING
            )
            return None
        return redirect("admin:campaigns_emailtemplate_test_send", queryset.get().pk)


@admin.register(Message)
class MessageAdmin(LargeTableAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "contact",
        "what",
        "status",
        "delivery",
        "is_test",
        "created_at",
        "sent_at",
    ]
    list_filter = ["status", "delivery", "kind", "is_test", "template", "created_at"]
    # Only shown in the search box; LargeTableAdminMixin says what is searched.
    search_fields = ["=esp_message_id"]
    search_help_text = f"Exact match: {CONTACT_HELP}, a message id or the ESP's id."
    list_select_related = ["contact", "template"]
    readonly_fields = [f.name for f in Message._meta.fields] + ["rendered"]
    actions = ["requeue_uncertain", "mark_uncertain_sent"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # Nothing on a message is edited by hand: the change permission is for the
        # list's actions (requeue, mark sent), a message's page is read-only.
        return obj is None and super().has_change_permission(request, obj)

    def get_urls(self):
        return [*consent_urls(self), *super().get_urls()]

    def exact_search_q(self, term: str) -> Q:
        return super().exact_search_q(term) | Q(esp_message_id=term)

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if not request.user.has_perm("campaigns.change_message"):
            # The email as rendered (its links inert all the same) only for those
            # who may send it again anyway.
            fields = [name for name in fields if name != "rendered"]
        return fields

    @admin.display(description="email", ordering="template")
    def what(self, obj: Message) -> str:
        if obj.kind == Message.Kind.NOTIFICATION:
            return f"Team notification: {obj.subject} (to {obj.to_email})"
        return str(obj.template)

    @admin.display(description="email as rendered now")
    def rendered(self, obj: Message):
        try:
            rendered = message_render(obj, inert=True)
        except RenderError as exc:
            return f"does not render: {exc}"
        if not rendered.html:  # a team notification: plain text
            return format_html(
                "<p><strong>{}</strong></p><pre>{}</pre>",
                rendered.subject,
                rendered.text,
            )
        return format_html(
            '<p><strong>{}</strong></p><iframe sandbox="allow-same-origin" srcdoc="{}" '
            'style="width:100%;max-width:700px;height:600px;border:1px solid #ccc">'
            "</iframe>",
            rendered.subject,
            rendered.html,
        )

    @admin.action(
        permissions=["change"],
        description="Send uncertain messages again (may duplicate)",
    )
    def requeue_uncertain(self, request, queryset):
        from .services import message_enqueue_send

        count = 0
        for message in queryset.filter(status=Message.Status.UNCERTAIN):
            Message.objects.filter(
                pk=message.pk, status=Message.Status.UNCERTAIN
            ).update(
                status=Message.Status.QUEUED,
                error="re-queued from admin after uncertain",
            )
            message_enqueue_send(message)
            count += 1
        self.message_user(request, f"{count} uncertain messages queued again.")

    @admin.action(permissions=["change"], description="Mark uncertain messages as sent")
    def mark_uncertain_sent(self, request, queryset):
        count = queryset.filter(status=Message.Status.UNCERTAIN).update(
            status=Message.Status.SENT, error="marked sent from admin after uncertain"
        )
        self.message_user(request, f"{count} uncertain messages marked sent.")


def messages_panel(request, contact) -> str:
    recent = (
        Message.objects.filter(contact=contact)
        .select_related("template")
        .order_by("-created_at")[:20]
    )
    return render_to_string(
        "admin/campaigns/messages_panel.html",
        {"messages_list": recent},
        request=request,
    )
