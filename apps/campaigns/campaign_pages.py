"""A campaign's pages beyond its form: review and send (audience figures, sample,
preview, test send, the confirmation), progress as JSON for the page's poller,
pause / resume / cancel, and the archive copy. Every write is a POST that needs
campaigns.send_campaign and goes through broadcasts.py."""

import datetime as dt

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import formats
from django.views.decorators.http import require_POST

from apps.contacts.models import Contact
from apps.core import clock
from apps.core.permissions import allowed, guarded

from .audience import audience_report
from .broadcasts import (
    CampaignError,
    campaign_cancel,
    campaign_pause,
    campaign_problems,
    campaign_resume,
    campaign_schedule,
    campaign_unschedule,
)
from .campaign_reports import campaign_progress, campaign_report
from .delivery import message_render
from .dispatch import render_context
from .models import Campaign, CampaignVariant, Message
from .rendering import RenderError
from .testsends import TestSendForm, send_test_from_form

Status = Campaign.Status
SEND = "campaigns.send_campaign"
CONTACTS = "contacts.view_contact"
# What each control button does: (allowed from, service, past tense).
CONTROLS = {
    "pause": ((Status.SENDING,), campaign_pause, "paused"),
    "resume": ((Status.PAUSED,), campaign_resume, "resumed"),
    "cancel": ((Status.SCHEDULED, Status.SENDING, Status.PAUSED), None, "cancelled"),
    "unschedule": ((Status.SCHEDULED,), campaign_unschedule, "back to draft"),
}
# How often the campaign page asks for progress, in milliseconds.
POLL_MS = 2000


def mask(email: str) -> str:
    """ada@example.com -> a••@example.com: enough to tell people apart, no more."""
    local, _, domain = (email or "").partition("@")
    return f"{local[:1]}••@{domain}" if domain else "••"


def when_label(campaign: Campaign) -> str:
    """When it goes, in words ("now", "at 7 Dec 2026 09:00 UTC", ...)."""
    if campaign.send_when == Campaign.When.AT and campaign.send_at:
        return f"at {_datetime(campaign.send_at)} UTC"
    if campaign.send_when == Campaign.When.LOCAL and campaign.local_date:
        return (
            f"at {campaign.local_time:%H:%M} in each person's time zone on "
            f"{formats.date_format(campaign.local_date, 'j M Y')} (no time zone: "
            f"{campaign.default_timezone})"
        )
    return "now"


def _datetime(at: dt.datetime) -> str:
    return formats.date_format(at.astimezone(dt.UTC), "j M Y H:i")


def sender_label(campaign: Campaign) -> str:
    """Who it comes from: the campaign's sender, else its email's, else the
    server's default."""
    variant = campaign.variants.select_related("template").first()
    template = variant.template if variant else None
    name = campaign.from_name or (template and template.from_name) or ""
    email = campaign.from_email or (template and template.from_email) or ""
    if not email:
        return f"the server's default address, {settings.DEFAULT_FROM_EMAIL}"
    return f"{name} <{email}>" if name else email


def confirm_label(campaign: Campaign, people: int) -> str:
    who = f"{people} {'person' if people == 1 else 'people'}"
    if campaign.send_when == Campaign.When.NOW:
        return f"Send to {who} now"
    return f"Schedule for {who} {when_label(campaign)}"


def render_variant(variant: CampaignVariant, contact: Contact | None) -> dict:
    """A variant as the contact (or nobody in particular) would get it, its links
    inert: an unsaved Message on the delivery path's own renderer."""
    campaign = variant.campaign
    message = Message(
        contact=contact or Contact(),
        template=variant.template,
        topic=campaign.topic,
        render_context=render_context(campaign),
        is_test=True,
    )
    try:
        rendered = message_render(message, inert=True)
    except RenderError as exc:
        return {"variant": variant, "error": str(exc)}
    return {"variant": variant, "subject": rendered.subject, "html": rendered.html}


def panel_context(request: HttpRequest, model_admin, campaign: Campaign) -> dict:
    """What the campaign's own page shows above its fields."""
    context = {
        "campaign": campaign,
        "can_send": allowed(request, model_admin, SEND),
        "when_label": when_label(campaign),
        "poll_ms": POLL_MS,
    }
    if campaign.status == Status.DRAFT:
        context["problems"] = campaign_problems(campaign)
    else:
        context["progress"] = campaign_progress(campaign)
    if campaign.status in (Status.SENT, Status.CANCELLED) or campaign.test_sent_at:
        context["report"] = campaign_report(campaign)
    return context


class CampaignTestSendForm(TestSendForm):
    variant = forms.ModelChoiceField(
        queryset=CampaignVariant.objects.none(), empty_label=None
    )

    def __init__(self, *args, campaign: Campaign, with_contacts: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["variant"].queryset = campaign.variants.select_related("template")
        if not with_contacts:
            del self.fields["contact"]
        else:
            self.fields["contact"].help_text = "Personalise as this contact."

    def clean(self):
        cleaned = super().clean()
        cleaned.setdefault("contact", None)
        return cleaned


class CampaignPages:
    def __init__(self, model_admin) -> None:
        self.model_admin = model_admin

    def urls(self) -> list:
        def url(route, view, name, *needs):
            return path(route, guarded(self.model_admin, view, *needs), name=name)

        return [
            url("<int:pk>/review/", self.review, "campaigns_campaign_review", "view"),
            url(
                "<int:pk>/test-send/",
                require_POST(self.test_send),
                "campaigns_campaign_test_send",
                SEND,
            ),
            url(
                "<int:pk>/schedule/",
                require_POST(self.schedule),
                "campaigns_campaign_schedule",
                SEND,
            ),
            url(
                "<int:pk>/progress.json",
                self.progress,
                "campaigns_campaign_progress",
                "view",
            ),
            url(
                "<int:pk>/control/<str:verb>/",
                self.control,
                "campaigns_campaign_control",
                SEND,
            ),
            url(
                "<int:pk>/archive/", self.archive, "campaigns_campaign_archive", "view"
            ),
        ]

    @staticmethod
    def redirect_to_review(campaign: Campaign):
        return redirect("admin:campaigns_campaign_review", campaign.pk)

    def _page(self, request, template: str, campaign: Campaign, title: str, **extra):
        context = {
            **self.model_admin.admin_site.each_context(request),
            "opts": Campaign._meta,
            "original": campaign,
            "campaign": campaign,
            "title": title,
            **extra,
        }
        return TemplateResponse(
            request, f"admin/campaigns/campaign/{template}", context
        )

    def review(self, request: HttpRequest, pk: int) -> HttpResponse:
        campaign = get_object_or_404(Campaign, pk=pk)
        if campaign.status != Status.DRAFT:
            messages.info(request, f"This campaign is {campaign.get_status_display()}.")
            return redirect("admin:campaigns_campaign_change", campaign.pk)
        with_contacts = allowed(request, self.model_admin, CONTACTS)
        report = audience_report(campaign, now=clock.now())
        contact = None
        if with_contacts and request.GET.get("contact", "").isdigit():
            contact = Contact.objects.filter(pk=request.GET["contact"]).first()
        variants = campaign.variants.select_related("template", "campaign__topic")
        test_form = CampaignTestSendForm(
            campaign=campaign,
            with_contacts=with_contacts,
            initial={"to_email": request.user.email, "contact": contact},
        )
        return self._page(
            request,
            "review.html",
            campaign,
            f"Review and send “{campaign.name}”",
            report=report,
            problems=campaign_problems(campaign),
            with_contacts=with_contacts,
            sample=[
                {"contact": c, "email": c.email if with_contacts else mask(c.email)}
                for c in report.sample
            ],
            preview_contact=contact,
            previews=[render_variant(v, contact) for v in variants],
            test_form=test_form,
            can_send=allowed(request, self.model_admin, SEND),
            confirm_label=confirm_label(campaign, report.will_receive),
            when_label=when_label(campaign),
            sender=sender_label(campaign),
        )

    def test_send(self, request: HttpRequest, pk: int) -> HttpResponse:
        campaign = get_object_or_404(Campaign, pk=pk)
        with_contacts = allowed(request, self.model_admin, CONTACTS)
        form = CampaignTestSendForm(
            request.POST, campaign=campaign, with_contacts=with_contacts
        )
        if not form.is_valid():
            for field, errors in form.errors.items():
                label = form.fields[field].label if field in form.fields else ""
                messages.error(request, f"Test not sent: {label} {' '.join(errors)}")
            return self.redirect_to_review(campaign)
        variant = form.cleaned_data["variant"]
        send_test_from_form(
            request,
            self.model_admin,
            form,
            template=variant.template,
            topic=campaign.topic,
            render_context=render_context(campaign),
        )
        return self.redirect_to_review(campaign)

    def schedule(self, request: HttpRequest, pk: int) -> HttpResponse:
        campaign = get_object_or_404(Campaign, pk=pk)
        try:
            campaign_schedule(campaign=campaign, by=request.user.get_username())
        except CampaignError as exc:
            messages.error(request, f"Not scheduled: {exc}")
            return self.redirect_to_review(campaign)
        if campaign.send_when == Campaign.When.NOW:
            messages.success(request, f"“{campaign.name}” is on its way.")
        else:
            messages.success(
                request, f"“{campaign.name}” is scheduled {when_label(campaign)}."
            )
        return redirect("admin:campaigns_campaign_change", campaign.pk)

    def progress(self, request: HttpRequest, pk: int) -> JsonResponse:
        campaign = get_object_or_404(Campaign, pk=pk)
        return JsonResponse(
            {
                **campaign_progress(campaign).as_dict(),
                "status": campaign.status,
                "status_label": campaign.get_status_display(),
                "verdict": campaign.verdict,
            }
        )

    def control(self, request: HttpRequest, pk: int, verb: str) -> HttpResponse:
        campaign = get_object_or_404(Campaign, pk=pk)
        if verb not in CONTROLS:
            raise PermissionDenied  # (no such button: refused as any other)
        states, service, done = CONTROLS[verb]
        back = redirect("admin:campaigns_campaign_change", campaign.pk)
        if campaign.status not in states:
            messages.warning(
                request,
                f"Nothing done: “{campaign.name}” is "
                f"{campaign.get_status_display().lower()}, it cannot be {done} now.",
            )
            return back
        progress = campaign_progress(campaign)
        if request.method != "POST":
            return self._page(
                request,
                "confirm_control.html",
                campaign,
                f"{verb.capitalize()} “{campaign.name}”?",
                verb=verb,
                progress=progress,
            )
        if verb == "cancel":
            dropped = campaign_cancel(campaign=campaign)
            ok = dropped is not None
            detail = f"{dropped or 0} queued messages will not go"
        else:
            ok = service(campaign=campaign)
            detail = f"{progress.waiting + progress.queued} still to go"
        if not ok:
            messages.warning(request, "Nothing done: its status changed meanwhile.")
            return back
        messages.success(
            request,
            f"“{campaign.name}” {done}: {progress.sent} sent so far, "
            f"{progress.failed} failed, {detail}.",
        )
        return back

    def archive(self, request: HttpRequest, pk: int) -> HttpResponse:
        campaign = get_object_or_404(Campaign, pk=pk)
        variant = campaign.winner or campaign.variants.first()
        if variant is None:
            messages.warning(request, "This campaign has no email yet.")
            return redirect("admin:campaigns_campaign_change", campaign.pk)
        return self._page(
            request,
            "archive.html",
            campaign,
            f"“{campaign.name}” as sent",
            rendered=render_variant(variant, None),
            variants=campaign.variants.count(),
        )


def review_url(campaign: Campaign) -> str:
    return reverse("admin:campaigns_campaign_review", args=[campaign.pk])
