"""Writes for campaigns: creating messages, test sends, consent."""

import logging
from typing import Any

from django.db import IntegrityError, transaction

from apps.contacts.models import ConsentStatus, Contact
from apps.core import clock, jobs
from apps.events.services import event_record

from .models import EmailTemplate, Message

logger = logging.getLogger(__name__)

# Consent states that stop all marketing email, from every path.
SUPPRESSED_CONSENT = {
    ConsentStatus.UNSUBSCRIBED,
    ConsentStatus.BOUNCED,
    ConsentStatus.COMPLAINED,
    ConsentStatus.PENDING,
}


def message_enqueue_send(message: Message) -> None:
    from .tasks import send_message

    # A stable job id per attempt: a tick re-enqueue while the job waits is a no-op,
    # and a retry scheduled from inside the running job does not collide with it.
    jobs.enqueue(
        send_message,
        message.pk,
        queue="email",
        job_id=f"message-{message.pk}-{message.attempts}",
        at=message.send_after if message.send_after > clock.now() else None,
    )


def message_create(
    *,
    contact: Contact,
    template: EmailTemplate,
    enrollment_id: int | None = None,
    step_id: int | None = None,
    campaign_id: int | None = None,
    render_context: dict[str, Any] | None = None,
    send_after=None,
    to_email: str = "",
    is_test: bool = False,
) -> tuple[Message, bool]:
    """Create the message for this cause and queue it; returns (message, created).

    For an (enrollment, step) that already has its message, that one is returned and
    nothing is queued again: the engine can retry a step without sending twice.
    """
    now = clock.now()
    if enrollment_id is not None:
        existing = Message.objects.filter(
            enrollment_id=enrollment_id, step_id=step_id
        ).first()
        if existing:
            return existing, False
    try:
        with transaction.atomic():
            message = Message.objects.create(
                contact=contact,
                template=template,
                enrollment_id=enrollment_id,
                step_id=step_id,
                campaign_id=campaign_id,
                render_context=render_context or {},
                created_at=now,
                send_after=send_after or now,
                to_email=to_email,
                is_test=is_test,
            )
    except IntegrityError:
        # A concurrent retry of the same step created it first.
        return Message.objects.get(enrollment_id=enrollment_id, step_id=step_id), False
    message_enqueue_send(message)
    logger.info(
        "message queued",
        extra={
            "message_id": message.pk,
            "contact_id": contact.pk,
            "template": template.name,
        },
    )
    return message, True


def message_create_test(
    *, template: EmailTemplate, contact: Contact, to_email: str
) -> Message:
    """A test send: rendered for ``contact`` but delivered to ``to_email``.

    Marked is_test: it ignores the contact's consent (it does not go to them) and
    never counts in reports.
    """
    message = Message.objects.create(
        contact=contact,
        template=template,
        to_email=to_email,
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
    message: Message | None = None,
    dedupe_key: str | None = None,
    record_event: bool = True,
) -> bool:
    """Change a contact's email consent and record it as an event; True if changed."""
    previous = contact.email_consent
    updated = (
        Contact.objects.filter(pk=contact.pk)
        .exclude(email_consent=status)
        .update(email_consent=status)
    )
    contact.email_consent = status
    if not updated:
        return False
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
                "template": message.template.name if message else None,
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
    *, contact: Contact, reason: str, message: Message | None = None
) -> bool:
    changed = contact_set_consent(
        contact=contact,
        status=ConsentStatus.UNSUBSCRIBED,
        reason=reason,
        message=message,
    )
    if changed and message is not None:
        Message.objects.filter(pk=message.pk, unsubscribed_at__isnull=True).update(
            unsubscribed_at=clock.now()
        )
    return changed


def contact_resubscribe(*, contact: Contact, reason: str) -> bool:
    """Only an unsubscribe can be undone by the person; bounces and complaints stay."""
    if contact.email_consent != ConsentStatus.UNSUBSCRIBED:
        return False
    return contact_set_consent(
        contact=contact, status=ConsentStatus.SUBSCRIBED, reason=reason
    )


def messages_move_to_contact(*, source_id: int, target_id: int) -> dict[str, int]:
    """CONTACTS_MERGED hook: a merged contact's messages belong to the survivor."""
    moved = Message.objects.filter(contact_id=source_id).update(contact_id=target_id)
    return {"messages": moved}
