"""Writes for campaigns: creating messages, test sends, consent."""

import logging
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from apps.contacts.consent import ConsentProof, contact_consent_change
from apps.contacts.models import (
    SUPPRESSION_FOR_CONSENT,
    ConsentStatus,
    Contact,
    SuppressedAddress,
    email_hash,
)
from apps.contacts.suppression import (
    address_follow_consent,
    address_lift,
    address_suppression,
)
from apps.core import clock, jobs
from apps.events.services import event_record

from .models import EmailTemplate, Message, Topic, TopicSubscription
from .topics import subscribed_to

logger = logging.getLogger(__name__)

# Consent states that stop all marketing email, from every path.
SUPPRESSED_CONSENT = {
    ConsentStatus.UNSUBSCRIBED,
    ConsentStatus.BOUNCED,
    ConsentStatus.COMPLAINED,
    ConsentStatus.PENDING,
}
# Consent states that stop even transactional email: the address failed, or its
# owner called us spam.
UNDELIVERABLE = {ConsentStatus.BOUNCED, ConsentStatus.COMPLAINED}


def message_enqueue_send(message: Message, *, also: str = "") -> None:
    """``also``: a second job for the same attempt (a held message released now,
    while its job waits for a later look; whichever runs second finds it gone)."""
    from .tasks import send_message

    # A stable job id per attempt: a tick re-enqueue while the job waits is a no-op,
    # and a retry scheduled from inside the running job does not collide with it.
    jobs.enqueue(
        send_message,
        message.pk,
        queue="email",
        job_id=f"message-{message.pk}-{message.attempts}{also}",
        at=message.send_after if message.send_after > clock.now() else None,
    )


def message_create(
    *,
    contact: Contact,
    template: EmailTemplate,
    enrollment_id: int | None = None,
    step_id: int | None = None,
    visit: int = 0,
    campaign_id: int | None = None,
    render_context: dict[str, Any] | None = None,
    send_after=None,
    to_email: str = "",
    is_test: bool = False,
    topic: Topic | None = None,
    transactional: bool = False,
    confirmation: bool = False,
) -> tuple[Message, bool]:
    """Create the message for this cause and queue it; returns (message, created).

    For an (enrollment, step, visit) that already has its message, that one is
    returned and nothing is queued again: the engine can retry a step without
    sending twice. ``topic``: what it is about (only its subscribers get it);
    ``transactional``: about the contact's own business, sent without marketing
    consent (see suppression_reason); ``confirmation``: double opt-in's request to
    confirm (see optin.py).
    """
    kind = Message.Kind.TRANSACTIONAL if transactional else Message.Kind.MARKETING
    if confirmation:
        kind = Message.Kind.CONFIRMATION
    return _message_create_once(
        Message(
            kind=kind,
            topic=topic,
            contact=contact,
            template=template,
            enrollment_id=enrollment_id,
            step_id=step_id,
            visit=visit,
            campaign_id=campaign_id,
            render_context=render_context or {},
            send_after=send_after,
            to_email=to_email,
            is_test=is_test,
        )
    )


def message_create_notification(
    *,
    contact: Contact,
    to_email: str,
    subject: str,
    body_text: str,
    enrollment_id: int,
    step_id: int,
    visit: int = 0,
    is_test: bool = False,
) -> tuple[Message, bool]:
    """A team notification about ``contact``, to ``to_email``: a row like every
    message (a flushed Redis loses nothing), claimed and sent the same way, once per
    (enrollment, step, visit). Its text is rendered by the caller, now."""
    return _message_create_once(
        Message(
            kind=Message.Kind.NOTIFICATION,
            contact=contact,
            to_email=to_email,
            subject=subject[:255],
            body_text=body_text,
            enrollment_id=enrollment_id,
            step_id=step_id,
            visit=visit,
            is_test=is_test,
        )
    )


def _message_create_once(message: Message) -> tuple[Message, bool]:
    now = clock.now()
    once = {
        "enrollment_id": message.enrollment_id,
        "step_id": message.step_id,
        "visit": message.visit,
    }
    if message.enrollment_id is not None:
        existing = Message.objects.filter(**once).first()
        if existing:
            return existing, False
    message.created_at = now
    message.send_after = message.send_after or now
    try:
        with transaction.atomic():
            message.save(force_insert=True)
    except IntegrityError:
        # A concurrent retry of the same step created it first.
        return Message.objects.get(**once), False
    message_enqueue_send(message)
    logger.info(
        "message queued",
        extra={
            "message_id": message.pk,
            "contact_id": message.contact_id,
            "kind": message.kind,
            "template": message.template.name if message.template else "",
        },
    )
    return message, True


def message_create_test(
    *,
    template: EmailTemplate,
    contact: Contact,
    to_email: str,
    topic=None,
    render_context: dict | None = None,
) -> Message:
    """A test send: rendered for ``contact`` but delivered to ``to_email`` (a
    campaign's test names its topic and campaign, so its footer is the real one's).

    Marked is_test: it ignores the contact's consent (it does not go to them), its
    links change nothing (they say it was a test), and it never counts in reports.
    The address list still applies: a suppressed address gets no test either.
    """
    message = Message.objects.create(
        contact=contact,
        template=template,
        to_email=to_email,
        topic=topic,
        render_context=render_context or {},
        is_test=True,
        created_at=clock.now(),
        send_after=clock.now(),
    )
    message_enqueue_send(message)
    return message


# -- consent ------------------------------------------------------------------------


def contact_set_consent(
    *,
    contact: Contact,
    status: str,
    reason: str,
    proof: ConsentProof,
    message: Message | None = None,
    dedupe_key: str | None = None,
    record_event: bool = True,
    lift: bool = False,
    email: str | None = None,
) -> bool:
    """Change a contact's email consent, keep the address list in step (``email``,
    the address the change is about: by default the contact's), and record it, as
    proof (``proof``: where it came from, contacts.consent) and as an event; True
    if the consent changed.

    Consent only tightens, except where the person may loosen it themselves (see
    consent_may_change) or ``lift`` is set: a server-side decision (staff, with a
    ``reason``) that may lift even a bounce or a complaint.
    """
    if lift and not reason.strip():
        raise ValueError("lifting a contact's consent needs a reason")
    previous = contact_consent_change(
        contact_id=contact.pk, status=status, proof=proof, lift=lift
    )
    if previous is not None or status in SUPPRESSION_FOR_CONSENT:
        # Staff lift the address's entries as far as the consent they lowered (a
        # bounced contact: its bounce too); anyone else only an unsubscribe.
        address_follow_consent(
            email=email or contact.email,
            status=status,
            detail=reason,
            lifts_up_to=(
                (previous or contact.email_consent)
                if lift
                else ConsentStatus.UNSUBSCRIBED
            ),
        )
    if previous is None:
        contact.email_consent = Contact.objects.values_list(
            "email_consent", flat=True
        ).get(pk=contact.pk)
        return False
    contact.email_consent = status
    event_name = {
        ConsentStatus.UNSUBSCRIBED: "email_unsubscribed",
        ConsentStatus.BOUNCED: "email_bounced",
        ConsentStatus.COMPLAINED: "email_complained",
        ConsentStatus.SUBSCRIBED: "email_subscribed",
    }.get(status)
    if event_name and record_event:
        event_record(
            contact_id=contact.pk,
            name=event_name,
            properties={
                "reason": reason,
                "previous": previous,
                "message_id": message.pk if message else None,
                "template": message.template.name
                if message and message.template
                else None,
            },
            dedupe_key=dedupe_key
            or f"consent:{contact.pk}:{status}:{clock.now().isoformat()}",
        )
    logger.info(
        "consent changed",
        extra={"contact_id": contact.pk, "consent": status, "reason": reason},
    )
    return True


def contact_unsubscribe(
    *,
    contact: Contact,
    reason: str,
    proof: ConsentProof,
    message: Message | None = None,
) -> bool:
    changed = contact_set_consent(
        contact=contact,
        status=ConsentStatus.UNSUBSCRIBED,
        reason=reason,
        proof=proof,
        message=message,
    )
    if message is not None:
        Message.objects.filter(pk=message.pk, unsubscribed_at__isnull=True).update(
            unsubscribed_at=clock.now()
        )
    return changed


def contact_may_resubscribe(contact: Contact) -> bool:
    """The person may undo their own unsubscribe, not a bounce or a complaint, nor
    an address suppressed for those (or by staff)."""
    if contact.email_consent not in (
        ConsentStatus.SUBSCRIBED,
        ConsentStatus.UNSUBSCRIBED,
    ):
        return False
    entry = address_suppression(contact.email)
    return entry is None or entry.reason == SuppressedAddress.Reason.UNSUBSCRIBED


def contact_resubscribe(*, contact: Contact, reason: str, proof: ConsentProof) -> bool:
    """Only an unsubscribe can be undone by the person; bounces and complaints stay."""
    if not contact_may_resubscribe(contact):
        return False
    changed = contact_set_consent(
        contact=contact, status=ConsentStatus.SUBSCRIBED, reason=reason, proof=proof
    )
    return changed or address_lift(
        email=contact.email or "",
        why=reason,
        only={SuppressedAddress.Reason.UNSUBSCRIBED},
    )


@dataclass
class SendFacts:
    """What the send-time rules read, loaded once for a batch of messages."""

    entries: dict[str, SuppressedAddress]
    topics: dict[tuple[int, int], bool]


def send_facts(messages: list[Message]) -> SendFacts:
    """The address list's entries and the topic choices for these messages, in two
    queries."""
    hashes = {email_hash(m.recipient) for m in messages if m.recipient}
    entries = {
        e.email_hash: e for e in SuppressedAddress.objects.filter(email_hash__in=hashes)
    }
    topical = [m for m in messages if m.topic_id is not None]
    topics = {}
    if topical:
        chosen = dict(
            (
                ((contact_id, topic_id), subscribed)
                for contact_id, topic_id, subscribed in TopicSubscription.objects.filter(
                    contact_id__in={m.contact_id for m in topical},
                    topic_id__in={m.topic_id for m in topical},
                ).values_list("contact_id", "topic_id", "subscribed")
            )
        )
        for m in topical:
            key = (m.contact_id, m.topic_id)
            topics[key] = chosen.get(key, m.topic.default == Topic.Default.OPT_OUT)
    return SendFacts(entries=entries, topics=topics)


def suppression_reason(message: Message, *, known: SendFacts | None = None) -> str:
    """Why ``message`` must not go out now ("" if it may); see send_refusal.
    ``known``: the list and the topic choices preloaded for a batch (send_facts)."""
    subscribed = None
    if known is not None and message.topic_id is not None:
        subscribed = known.topics[(message.contact_id, message.topic_id)]
    return send_refusal(
        contact=message.contact,
        to=message.recipient,
        kind=message.kind,
        topic=message.topic,
        is_test=message.is_test,
        entry=(
            known.entries.get(email_hash(message.recipient))
            if known is not None and message.recipient
            else _LOOK_UP
        ),
        subscribed=subscribed,
    )


_LOOK_UP = object()


def send_refusal(
    *,
    contact: Contact,
    to: str,
    kind: str,
    topic: Topic | None,
    is_test: bool,
    entry=_LOOK_UP,
    subscribed: bool | None = None,
) -> str:
    """The send-time rules, for a workflow's send step and for delivery alike: why
    an email of ``kind`` (about ``topic``) to ``to`` must not go ("" if it may).

    The address list on every path; for marketing email to the contact, their own
    consent, then the topic (topics narrow, never widen). A transactional email (a
    receipt) needs neither, but never goes to an address that bounced or
    complained. A test goes to the tester: only the list applies. ``entry`` and
    ``subscribed``: the list's entry and the topic choice when already read."""
    if entry is _LOOK_UP:
        entry = address_suppression(to)
    if entry is not None and not (
        kind == Message.Kind.TRANSACTIONAL
        and entry.reason == SuppressedAddress.Reason.UNSUBSCRIBED
    ):
        return f"the address is on the suppression list ({entry.get_reason_display().lower()})"
    if is_test:
        return ""
    consent = contact.email_consent
    if kind == Message.Kind.MARKETING:
        if consent in SUPPRESSED_CONSENT:
            return f"contact is {consent}"
        if topic is not None and not (
            subscribed_to(contact, topic) if subscribed is None else subscribed
        ):
            return f"contact is not subscribed to the topic “{topic.name}”"
    if kind == Message.Kind.TRANSACTIONAL and consent in UNDELIVERABLE:
        return f"contact is {consent}"
    if kind == Message.Kind.CONFIRMATION and consent != ConsentStatus.PENDING:
        # Confirmed (or opted out) since it was queued: nothing left to ask.
        return f"contact is {consent}, no longer pending confirmation"
    return ""


def messages_move_to_contact(*, source_id: int, target_id: int) -> dict[str, int]:
    """CONTACTS_MERGED hook: a merged contact's messages belong to the survivor."""
    moved = Message.objects.filter(contact_id=source_id).update(contact_id=target_id)
    return {"messages": moved}


def messages_cancel_queued(*, enrollment_id: int, reason: str) -> int:
    """A run ended for a reason outside its steps (its goal reached, its exit
    condition met, set aside by a merge): the emails it queued that have not gone
    yet (an ESP retry an hour away, a backlog) never will. How many."""
    return Message.objects.filter(
        enrollment_id=enrollment_id, status=Message.Status.QUEUED
    ).update(status=Message.Status.CANCELLED, error=f"not sent: {reason}"[:2000])


# How delivery marks a message its cause holds back (delivery._hold).
HELD = "held: "


def messages_release_held(*, enrollment_ids) -> int:
    """The held emails of these runs (their workflow was paused) go now, not at
    their next look: the workflow was resumed. How many."""
    held = list(
        Message.objects.filter(
            enrollment_id__in=enrollment_ids,
            status=Message.Status.QUEUED,
            error__startswith=HELD,
        ).only("pk", "send_after", "attempts")
    )
    now = clock.now()
    Message.objects.filter(pk__in=[m.pk for m in held]).update(send_after=now)
    for message in held:
        message.send_after = now
        message_enqueue_send(message, also="-released")
    return len(held)
