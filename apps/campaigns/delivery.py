"""Sending one message, exactly once.

claim (queued -> sending, a conditional UPDATE) -> check consent -> render -> hand to
the ESP -> record (sent, with the ESP's id). A job that runs twice, or two workers that
run it at once, find the claim taken and do nothing. A worker killed between the
claim and the record leaves the row in ``sending``; the tick turns it ``uncertain``
after NUDGE_SENDING_TIMEOUT_SECONDS instead of sending it a second time blindly.
"""

import dataclasses
import datetime as dt
import email.policy
import logging

from anymail.message import AnymailMessage
from django.conf import settings
from django.core.mail import mailers
from django.db import connection
from django.db.models import Case, F, OuterRef, Q, Subquery, Value, When
from django.db.models.functions import Coalesce

from apps.contacts.models import Contact
from apps.core import clock, hooks

from .context import build_context, link_urls, signed_url, uses_recent_events
from .handoff import Verdict, classify
from .models import Campaign, EmailTemplate, Message, Topic
from .recording import RECORD_EVERY, HandedOver, handed_over, messages_record_sent
from .rendering import RenderedEmail, RenderError, render_email
from .services import HELD, SendFacts, send_facts, suppression_reason
from .tokens import make_click_token

logger = logging.getLogger(__name__)

# Retry delays after a transient ESP error: 1, 5, 15, 60 minutes, then give up.
RETRY_DELAYS = [60, 300, 900, 3600]


# RFC 5322 allows 998 characters a line. With the stdlib's default of 78, a long
# unbreakable header (List-Unsubscribe with its signed URL) is "folded" into RFC 2047
# encoded words, which mail clients do not decode in that header: the one-click link
# would break for everyone sending over SMTP.
EMAIL_POLICY = email.policy.default.clone(max_line_length=998)


class NudgeEmail(AnymailMessage):
    def message(self, *, policy=EMAIL_POLICY):
        # Django's SMTP backend asks for email.policy.SMTP (78 columns): keep its line
        # ending, never its folding of List-Unsubscribe.
        return super().message(policy=policy.clone(max_line_length=998))


class SendOutcome:
    SENT = "sent"
    NOT_CLAIMED = "not claimed"
    SUPPRESSED = "suppressed"
    FAILED = "failed"
    RETRY = "retry"
    UNCERTAIN = "uncertain"
    HELD = "held"
    CANCELLED = "cancelled"


def message_send(*, message_id: int) -> str:
    """Send the message if it is queued and due; returns what happened."""
    message = _claim(message_id)
    if message is None:
        return SendOutcome.NOT_CLAIMED  # sent, sending elsewhere, or not due yet
    log = {"message_id": message.pk, "contact_id": message.contact_id}

    refused = _refuse_unsendable(message, log)
    if refused:
        return refused
    try:
        rendered = message_render(message)
    except RenderError as exc:
        _finish(message, Message.Status.FAILED, error=f"template error: {exc}")
        logger.warning("message failed to render", extra={**log, "error": str(exc)})
        return SendOutcome.FAILED

    email = _build_email(message, rendered)
    failed = _hand_to_esp(message, email)
    if failed:
        return failed
    messages_record_sent(sent=[handed_over(message, email, rendered.subject)])
    return SendOutcome.SENT


def messages_send_batch(*, message_ids: list[int]) -> dict[str, int]:
    """Send the queued and due ones of these messages, each exactly as message_send
    would (claim, refuse, render, hand over, record), RECORD_EVERY at a time: one
    claim, one load, one look at the address list and the topics, and one record
    (apps/campaigns/recording.py) for each group, one connection to the ESP for
    them all. A worker killed mid-batch leaves at most its group in hand
    (``sending``, then uncertain); the rest are still queued, for the tick to
    queue again. An error before a message is handed over puts it, and the rest
    of its group, back in the queue. What happened, counted by outcome."""
    from .broadcasts import campaign_status_forget, campaign_status_memo

    outcomes: dict[str, int] = {}
    shared = _Shared()
    sent: list[HandedOver] = []
    # Opened before anything is claimed: an ESP (or SMTP server) that cannot be
    # reached fails the job with every message still queued.
    mailer = mailers.default
    mailer.open()
    memo = campaign_status_memo()
    try:
        for start in range(0, len(message_ids), RECORD_EVERY):
            # Each group is claimed when its turn comes and reads its campaign's
            # status afresh: a pause or a cancel stops a batch within a group.
            group = _claim_many(message_ids[start : start + RECORD_EVERY], shared)
            if not group:
                continue
            reached = 0
            try:
                campaign_status_forget()
                known = send_facts(group)
                for message in group:
                    reached += 1
                    outcome = _send_claimed(
                        message, known, shared.layout(), mailer, sent
                    )
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
            except BaseException:
                # Not handed over: the group's messages after the one that broke
                # (that one may have been, so it is left to be uncertain).
                _unclaim([m.pk for m in (group[reached:] if reached else group)])
                raise
            messages_record_sent(sent=sent)
            sent = []
    finally:
        try:
            # What the ESP took is recorded even if a later message broke the job.
            messages_record_sent(sent=sent)
        finally:
            try:
                mailer.close()
            finally:
                # The worker runs the next job in this process: no stale statuses.
                memo.var.reset(memo)
    return outcomes


def _unclaim(message_ids: list[int]) -> None:
    """sending -> queued for claimed messages never handed over: the next job
    sends them. The claim counts as an attempt, so a group that breaks every
    time gives up (failed) after NUDGE_SEND_MAX_ATTEMPTS instead of going round
    for ever."""
    if not message_ids:
        return
    claimed = Message.objects.filter(pk__in=message_ids, status=Message.Status.SENDING)
    limit = settings.NUDGE_SEND_MAX_ATTEMPTS
    claimed.filter(attempts__gte=limit).update(
        status=Message.Status.FAILED,
        error=f"gave up after {limit} attempts: the batch broke before sending it",
    )
    claimed.update(status=Message.Status.QUEUED)


class _Shared:
    """What a batch's messages share, read once a batch: their templates (with
    layouts), topics and the default layout."""

    def __init__(self) -> None:
        self.templates: dict[int, EmailTemplate] = {}
        self.topics: dict[int, Topic] = {}
        self._layout = None
        self._layout_read = False

    def attach(self, messages: list[Message]) -> None:
        wanted = {m.template_id for m in messages if m.template_id} - set(
            self.templates
        )
        self.templates.update(
            EmailTemplate.objects.select_related("layout").in_bulk(wanted)
        )
        wanted = {m.topic_id for m in messages if m.topic_id} - set(self.topics)
        self.topics.update(Topic.objects.in_bulk(wanted))
        for message in messages:
            if message.template_id:
                message.template = self.templates[message.template_id]
            if message.topic_id:
                message.topic = self.topics[message.topic_id]

    def layout(self):
        if not self._layout_read:
            self._layout, self._layout_read = _default_layout(), True
        return self._layout


def _send_claimed(
    message: Message, known: SendFacts, layout, mailer, sent: list[HandedOver]
) -> str:
    """Refuse, render and hand over one claimed message; a message handed over
    joins ``sent``, to be recorded with others."""
    log = {"message_id": message.pk, "contact_id": message.contact_id}
    refused = _refuse_unsendable(message, log, known)
    if refused:
        return refused
    try:
        rendered = message_render(message, default_layout=layout)
    except RenderError as exc:
        _finish(message, Message.Status.FAILED, error=f"template error: {exc}")
        logger.warning("message failed to render", extra={**log, "error": str(exc)})
        return SendOutcome.FAILED
    email = _build_email(message, rendered)
    failed = _hand_to_esp(message, email, mailer)
    if failed:
        return failed
    sent.append(handed_over(message, email, rendered.subject))
    return SendOutcome.SENT


def _claim_many(
    message_ids: list[int], shared: "_Shared | None" = None
) -> list[Message]:
    """queued -> sending for those of ``message_ids`` that are due, in one UPDATE;
    the claimed messages (a message another worker holds is not among them), with
    their contacts, templates and topics (``shared``: read once a batch)."""
    if not message_ids:
        return []
    now = clock.now()
    table = Message._meta.db_table
    contacts = Contact._meta.db_table
    campaigns = Campaign._meta.db_table
    marks = ", ".join(["%s"] * len(message_ids))
    with connection.cursor() as cursor:
        # As _claim: the address this attempt goes to is recorded with the claim.
        cursor.execute(
            f"UPDATE {table} SET status = %s, claimed_at = %s, error = '', "  # noqa: S608
            f"attempts = attempts + 1, to_email = CASE "
            f"WHEN kind <> %s AND NOT is_test THEN COALESCE((SELECT c.email FROM "
            f"{contacts} c WHERE c.id = {table}.contact_id), '') ELSE to_email END "
            f"WHERE id IN ({marks}) AND status = %s AND send_after <= %s "
            # A paused campaign's messages stay queued, unclaimed, until it resumes.
            f"AND (campaign_id IS NULL OR campaign_id NOT IN "
            f"(SELECT id FROM {campaigns} WHERE status = %s)) "
            f"RETURNING id",
            [
                Message.Status.SENDING,
                now,
                Message.Kind.NOTIFICATION,
                *message_ids,
                Message.Status.QUEUED,
                now,
                Campaign.Status.PAUSED,
            ],
        )
        claimed = [row[0] for row in cursor.fetchall()]
    try:
        messages = list(
            Message.objects.select_related("contact")
            .filter(pk__in=claimed)
            .order_by("pk")
        )
        (shared or _Shared()).attach(messages)
    except BaseException:
        _unclaim(claimed)  # none was handed over
        raise
    return messages


def _claim(message_id: int) -> Message | None:
    """queued -> sending if due; the message, or None if another run has it."""
    now = clock.now()
    # The claim also records the address this attempt goes to: a contact's email
    # goes to their address as it is now (it may have changed while the message was
    # held or waiting for a retry); a test send or a notification to the address it
    # names. A bounce reported later is about the address recorded.
    contact_email = Contact.objects.filter(pk=OuterRef("contact_id")).values("email")
    to_the_contact = ~Q(kind=Message.Kind.NOTIFICATION) & Q(is_test=False)
    claimed = Message.objects.filter(
        pk=message_id, status=Message.Status.QUEUED, send_after__lte=now
    ).update(
        status=Message.Status.SENDING,
        claimed_at=now,
        attempts=F("attempts") + 1,
        to_email=Case(
            When(
                to_the_contact,
                then=Coalesce(Subquery(contact_email[:1]), Value("")),
            ),
            default=F("to_email"),
        ),
    )
    if claimed != 1:
        return None
    return Message.objects.select_related("contact", "template__layout", "topic").get(
        pk=message_id
    )


def _refuse_unsendable(
    message: Message, log: dict, known: SendFacts | None = None
) -> str | None:
    """The outcome if the claimed message must not go out, else None."""
    if message.contact.erased_at:
        # Queued by a dispatch that read the contact just before its erasure: not
        # sent, and emptied as the erasure empties the others.
        Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
            status=Message.Status.CANCELLED,
            error="not sent: the person was erased",
            to_email="",
            subject="",
            body_text="",
            render_context={},
        )
        return SendOutcome.CANCELLED
    if not message.recipient:
        _finish(
            message, Message.Status.FAILED, error="the contact has no email address"
        )
        return SendOutcome.FAILED
    why = suppression_reason(message, known=known)
    if why:
        _finish(message, Message.Status.SUPPRESSED, error=f"suppressed: {why}")
        logger.info("message suppressed", extra={**log, "why": why})
        return SendOutcome.SUPPRESSED
    for hold in filter(None, hooks.run(hooks.MESSAGE_MAY_GO, message=message)):
        if hold.until is None:
            _finish(message, Message.Status.CANCELLED, error=f"not sent: {hold.reason}")
            logger.info("message cancelled", extra={**log, "why": hold.reason})
            return SendOutcome.CANCELLED
        return _hold(message, hold, log)
    return None


def _hold(message: Message, hold: hooks.MessageHold, log: dict) -> str:
    """Back to queued until ``hold.until``, this claim not counted as an attempt: a
    long pause must not use up the retries a failing ESP gets."""
    from .services import message_enqueue_send

    message.send_after = hold.until
    Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
        status=Message.Status.QUEUED,
        send_after=hold.until,
        attempts=F("attempts") - 1,
        error=f"{HELD}{hold.reason}",
    )
    message_enqueue_send(message)
    logger.info("message held", extra={**log, "why": hold.reason})
    return SendOutcome.HELD


def _hand_to_esp(message: Message, email: NudgeEmail, mailer=None) -> str | None:
    """None if the ESP took the email; else the outcome of the failure, decided by
    what the error proves (apps/campaigns/handoff.py): retried only when the ESP is
    known not to have it, ``uncertain`` when it may."""
    try:
        (mailer or mailers.default).send_messages([email])
    except Exception as exc:
        found = classify(exc, email)
        log = {"message_id": message.pk, "contact_id": message.contact_id}
        if found.verdict == Verdict.SENT:
            logger.warning(
                "message sent, then an error", extra={**log, "error": str(exc)}
            )
            return None
        if found.verdict == Verdict.RETRY:
            return _retry_later(message, error=found.reason)
        if found.verdict == Verdict.UNCERTAIN:
            _finish(message, Message.Status.UNCERTAIN, error=found.reason)
            logger.warning(
                "message send cut off: uncertain", extra={**log, "error": found.reason}
            )
            return SendOutcome.UNCERTAIN
        _finish(message, Message.Status.FAILED, error=found.reason)
        return SendOutcome.FAILED
    return None


def message_render(
    message: Message, *, inert: bool = False, default_layout=None
) -> RenderedEmail:
    """The message as it goes out; ``inert``: as staff see it in admin, its links
    changing nothing (test unsubscribe links, no click tracking), so a page that
    shows it hands out no live signed link."""
    if message.kind == Message.Kind.NOTIFICATION:
        # Rendered when it was created (apps/workflows/steps/messaging.py): plain text.
        return RenderedEmail(subject=message.subject, html="", text=message.body_text)
    template = message.template
    layout = template.layout or default_layout or _default_layout()
    sources = {
        "subject": template.subject,
        "preheader": template.preheader,
        "html_body": template.html_body,
        "text_body": template.text_body,
        "layout_html": layout.html if layout else None,
    }
    context = build_context(
        contact=message.contact,
        message_id=message.pk,
        extra=message.render_context,
        is_test=message.is_test or inert,
        topic=message.topic,
        with_recent_events=uses_recent_events(*sources.values()),
    )
    rewriter = None
    if template.track_clicks and message.pk and not inert:

        def rewriter(url: str) -> str:
            token = make_click_token(message_id=message.pk, url=url)
            return signed_url("campaigns:click", token)

    rendered = render_email(**sources, context=context, link_rewriter=rewriter)
    return dataclasses.replace(
        rendered, unsubscribe_url=context.get("unsubscribe_url", "")
    )


def _default_layout():
    from .models import EmailLayout

    return EmailLayout.objects.filter(is_default=True).first()


def _build_email(message: Message, rendered: RenderedEmail) -> NudgeEmail:
    if message.kind == Message.Kind.NOTIFICATION:
        return _build_notification(message, rendered)
    template = message.template
    # A campaign's own sender, where it has one (dispatch.sender_overrides).
    sender = (message.render_context or {}).get("sender") or {}
    from_name = sender.get("from_name") or template.from_name
    address = sender.get("from_email") or template.from_email
    reply_to = sender.get("reply_to") or template.reply_to
    from_email = address or settings.DEFAULT_FROM_EMAIL
    if from_name and address:
        from_email = f"{from_name} <{address}>"
    # The template's own link when it was rendered for this message (as sent);
    # made here for a message rendered elsewhere.
    unsubscribe_url = (
        rendered.unsubscribe_url
        or link_urls(
            contact_id=message.contact_id,
            message_id=message.pk,
            is_test=message.is_test,
            topic_id=message.topic_id,
        )["unsubscribe_url"]
    )
    email = NudgeEmail(
        subject=("[TEST] " if message.is_test else "") + rendered.subject,
        body=rendered.text,
        from_email=from_email,
        to=[message.recipient],
        reply_to=[reply_to] if reply_to else None,
        headers={
            "Message-ID": message.message_id_header,
            # RFC 8058 one-click unsubscribe: the https URL takes a POST.
            "List-Unsubscribe": f"<{unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    email.attach_alternative(rendered.html, "text/html")
    email.metadata = {"nudge_message_id": str(message.pk)}
    email.tags = [str(tag) for tag in (template.tags or [])][:10]
    return email


def _build_notification(message: Message, rendered: RenderedEmail) -> NudgeEmail:
    """A note to the team: plain text, no unsubscribe (it is not marketing)."""
    email = NudgeEmail(
        subject=("[TEST] " if message.is_test else "") + rendered.subject,
        body=rendered.text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[message.recipient],
        headers={"Message-ID": message.message_id_header},
    )
    email.metadata = {"nudge_message_id": str(message.pk)}
    return email


def _retry_later(message: Message, *, error: str) -> str:
    from .services import message_enqueue_send

    if message.attempts >= settings.NUDGE_SEND_MAX_ATTEMPTS:
        _finish(
            message,
            Message.Status.FAILED,
            error=f"gave up after {message.attempts} attempts: {error}",
        )
        return SendOutcome.FAILED
    delay = RETRY_DELAYS[min(message.attempts - 1, len(RETRY_DELAYS) - 1)]
    message.send_after = clock.now() + dt.timedelta(seconds=delay)
    Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
        status=Message.Status.QUEUED, send_after=message.send_after, error=error
    )
    message_enqueue_send(message)
    logger.warning(
        "message send failed, will retry",
        extra={"message_id": message.pk, "retry_in": delay, "error": error},
    )
    return SendOutcome.RETRY


def _finish(message: Message, status: str, *, error: str = "") -> None:
    Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
        status=status, error=error[:2000]
    )
