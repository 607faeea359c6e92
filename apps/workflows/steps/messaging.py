"""Email steps: send a template (or an A/B of templates), notify the team."""

import datetime as dt
import re

from apps.campaigns.models import EmailTemplate, Message, Topic
from apps.campaigns.rendering import RenderError, render_string
from apps.campaigns.services import (
    message_create,
    message_create_notification,
    send_refusal,
)

from .base import Outcome, StepContext, StepType, register_step
from .flow import bucket, pick
from .waits import contact_zone

COUNTED = [Message.Status.QUEUED, Message.Status.SENDING, Message.Status.SENT]


def _templates(config) -> list[tuple[str, float]]:
    if config.get("variants"):
        return [(v.get("template"), v.get("weight", 1)) for v in config["variants"]]
    return [(config.get("template"), 1)]


class SendEmail(StepType):
    name = "send_email"
    label = "Send email"

    def validate(self, config, where):
        choices = _templates(config)
        errors = []
        names = [name for name, _ in choices]
        if not names or not all(isinstance(n, str) and n for n in names):
            return [f"{where}.template: choose a template"]
        known = set(
            EmailTemplate.objects.filter(name__in=names).values_list("name", flat=True)
        )
        for name in names:
            if name not in known:
                errors.append(f"{where}.template: no template named {name!r}")
        if any(not isinstance(w, int | float) or w <= 0 for _, w in choices):
            errors.append(f"{where}.variants: weights must be positive numbers")
        return errors + _topic_errors(config, where)

    def run(self, ctx: StepContext) -> Outcome:
        existing = this_visits_message(ctx)
        if existing:  # a retry after a crash: the message exists, do not decide again
            return Outcome(
                "sent",
                detail={"message_id": existing.pk},
                reason="message already created",
            )
        config = ctx.step.config
        transactional = bool(config.get("transactional"))
        topic = None
        if config.get("topic"):
            topic = Topic.objects.filter(slug=config["topic"]).first()
            if topic is None:
                # Renamed or deleted since the workflow was saved: sending without
                # it would reach everyone, not the topic's subscribers.
                return Outcome(
                    "failed", reason=f"no topic {config['topic']!r}: nothing sent"
                )
        refused = _refusal(ctx, transactional=transactional, topic=topic)
        if refused is not None:
            return refused
        if not ctx.enrollment.is_test and not transactional:
            held = quiet_hours(ctx)
            if held is not None:
                return held
            capped = frequency_cap(ctx)
            if capped is not None:
                return capped
        choices = _templates(ctx.step.config)
        name = (
            pick(choices, bucket(ctx.enrollment.pk, ctx.step.pk))
            if len(choices) > 1
            else choices[0][0]
        )
        template = EmailTemplate.objects.get(name=name)
        message, _created = message_create(
            contact=ctx.contact,
            template=template,
            enrollment_id=ctx.enrollment.pk,
            step_id=ctx.step.pk,
            visit=ctx.enrollment.steps_taken,
            render_context={
                "event": ctx.enrollment.trigger_event,
                "workflow": {"name": ctx.enrollment.workflow.name},
                "variant": name if len(choices) > 1 else "",
            },
            to_email=ctx.enrollment.test_email if ctx.enrollment.is_test else "",
            is_test=ctx.enrollment.is_test,
            topic=None if transactional else topic,
            transactional=transactional,
        )
        detail = {"message_id": message.pk, "template": name}
        if len(choices) > 1:
            detail["variant"] = name
        return Outcome("sent", detail=detail, reason=f"“{name}” queued for sending")

    def describe(self, config):
        names = [n for n, _ in _templates(config)]
        if len(names) > 1:
            text = "Send A/B: " + " / ".join(f"“{n}”" for n in names)
        else:
            text = f"Send “{names[0]}”"
        if config.get("transactional"):
            return f"{text} (transactional: sent without marketing consent)"
        if config.get("topic"):
            return f"{text} (topic {config['topic']})"
        return text


def _topic_errors(config, where) -> list[str]:
    errors = []
    slug, transactional = config.get("topic"), config.get("transactional")
    if transactional is not None and not isinstance(transactional, bool):
        errors.append(f"{where}.transactional: true or false")
    if slug is not None:
        if not isinstance(slug, str) or not slug:
            errors.append(f"{where}.topic: a topic's slug")
        elif not Topic.objects.filter(slug=slug).exists():
            known = ", ".join(Topic.objects.values_list("slug", flat=True)) or "none"
            errors.append(f"{where}.topic: no topic {slug!r} (topics: {known})")
        if transactional is True:
            errors.append(
                f"{where}.topic: a transactional send has no topic (it goes "
                "without marketing consent); remove one or the other"
            )
    return errors


def _refusal(ctx: StepContext, *, transactional: bool, topic) -> Outcome | None:
    """Skipped, and why, when this send must not be made: the rules delivery checks
    again at send time (services.send_refusal)."""
    is_test = ctx.enrollment.is_test
    if not is_test and not ctx.contact.email:
        return Outcome("skipped", reason="the contact has no email address")
    kind = Message.Kind.TRANSACTIONAL if transactional else Message.Kind.MARKETING
    why = send_refusal(
        contact=ctx.contact,
        to=ctx.enrollment.test_email if is_test else ctx.contact.email,
        kind=kind,
        topic=None if transactional else topic,
        is_test=is_test,
    )
    return Outcome("skipped", reason=f"suppressed: {why}") if why else None


def this_visits_message(ctx: StepContext) -> Message | None:
    """The message this pass through the step created already (a retry), if any."""
    return Message.objects.filter(
        enrollment_id=ctx.enrollment.pk,
        step_id=ctx.step.pk,
        visit=ctx.enrollment.steps_taken,
    ).first()


def quiet_hours(ctx: StepContext) -> Outcome | None:
    """Defer (wait until they end) or skip a send inside the contact's quiet hours."""
    quiet = ctx.settings.get("quiet_hours") or {}
    if not quiet.get("start") or not quiet.get("end"):
        return None
    zone = contact_zone(ctx.contact)
    local = ctx.now.astimezone(zone)
    start, end = (
        dt.time.fromisoformat(quiet["start"]),
        dt.time.fromisoformat(quiet["end"]),
    )
    now_t = local.time()
    inside = (start <= now_t < end) if start < end else (now_t >= start or now_t < end)
    if not inside:
        return None
    if quiet.get("mode") == "skip":
        return Outcome(
            "skipped",
            reason=f"quiet hours ({quiet['start']}-{quiet['end']} {zone}): skipped",
        )
    end_day = local.date() if now_t < end else local.date() + dt.timedelta(days=1)
    until = dt.datetime.combine(end_day, end, tzinfo=zone).astimezone(dt.UTC)
    return Outcome(
        "deferred",
        outlet=None,
        wait_until=until,
        reason=f"quiet hours ({quiet['start']}-{quiet['end']} {zone}): deferred to {quiet['end']}",
    )


def frequency_cap(ctx: StepContext) -> Outcome | None:
    """At most N marketing emails per contact per rolling window, across workflows and
    campaigns (test sends do not count)."""
    cap = ctx.settings.get("frequency_cap") or {}
    if not cap.get("max"):
        return None
    since = ctx.now - dt.timedelta(hours=cap.get("hours", 24))
    sent = Message.objects.filter(
        contact_id=ctx.contact.pk,
        kind=Message.Kind.MARKETING,
        is_test=False,
        created_at__gte=since,
        status__in=COUNTED,
    ).count()
    if sent < cap["max"]:
        return None
    return Outcome(
        "skipped",
        reason=f"frequency cap: {sent} emails in the last {cap.get('hours', 24)} hours (max {cap['max']})",
        detail={"cap": cap, "recent": sent},
    )


EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
NOT_CONTACT_DATA = (
    "'owner' (the contact's owner_email) is no longer a recipient: a notification "
    "goes to a staff user or an address chosen here, never to an address taken "
    "from the contact's data (which a browser could set); choose one"
)


class Notify(StepType):
    """An internal email to the team: to a staff user (by username, their email
    read when the step runs) or an address the workflow names.

    Never to an address read from the contact: a notification carries the
    contact's data, and whoever could set such an attribute (a public browser key,
    an import) could have any contact's data mailed to themselves.
    """

    name = "notify"
    label = "Notify the team"

    def validate(self, config, where):
        errors = []
        to = config.get("to")
        if to == "owner":
            errors.append(f"{where}.to: {NOT_CONTACT_DATA}")
        elif not (isinstance(to, str) and (EMAIL.match(to) or _staff_user(to))):
            errors.append(
                f"{where}.to: an email address, or the username of an active staff user"
            )
        if not config.get("subject"):
            errors.append(f"{where}.subject: a subject")
        return errors

    def run(self, ctx: StepContext) -> Outcome:
        existing = this_visits_message(ctx)
        if existing:  # a retry after a crash
            return Outcome(
                "notified",
                reason=f"told {existing.to_email} (already queued)",
                detail={"message_id": existing.pk, "to": existing.to_email},
            )
        config = ctx.step.config
        to, refusal = _recipient(config.get("to"))
        if refusal:
            # A definition saved before this rule, or a staff user gone since.
            return Outcome("failed", reason=refusal)
        if ctx.enrollment.is_test:
            to = ctx.enrollment.test_email or to
        data = {
            "contact": {
                "email": ctx.contact.email or "",
                "name": ctx.contact.full_name,
                "attributes": ctx.contact.attributes or {},
            },
            "event": ctx.enrollment.trigger_event,
            "workflow": {"name": ctx.enrollment.workflow.name},
        }
        try:
            subject = render_string(
                config["subject"], data, html=False, field="subject"
            )
            body = render_string(
                config.get("body") or "", data, html=False, field="body"
            )
        except RenderError as exc:
            return Outcome("failed", reason=str(exc))
        # A row like every message: a flushed Redis loses nothing, and it is
        # claimed and sent (and checked against the suppression list) the same way.
        message, _created = message_create_notification(
            contact=ctx.contact,
            to_email=str(to),
            subject=" ".join(subject.split()),
            body_text=body,
            enrollment_id=ctx.enrollment.pk,
            step_id=ctx.step.pk,
            visit=ctx.enrollment.steps_taken,
            is_test=ctx.enrollment.is_test,
        )
        return Outcome(
            "notified",
            reason=f"told {to}",
            detail={"to": to, "subject": subject, "message_id": message.pk},
        )

    def describe(self, config):
        return f"Notify {config.get('to')}"


def _staff_user(username: str):
    from django.contrib.auth import get_user_model

    return (
        get_user_model()
        .objects.filter(username=username, is_staff=True, is_active=True)
        .first()
    )


def _recipient(to) -> tuple[str, str]:
    """The address a notify step's ``to`` names and "", or "" and why not."""
    if to == "owner":
        return "", f"to: {NOT_CONTACT_DATA}"
    if not isinstance(to, str) or not to:
        return "", "to: no recipient"
    if EMAIL.match(to):
        return to, ""
    user = _staff_user(to)
    if user is None:
        return "", f"to: {to!r} is not an active staff user"
    if not EMAIL.match(user.email or ""):
        return "", f"to: staff user {to!r} has no email address"
    return user.email, ""


register_step(SendEmail())
register_step(Notify())
