"""What the ESP tells us after sending: delivered, opened, clicked, bounced, ...

Anymail turns each ESP's webhook into a normalised AnymailTrackingEvent and sends the
``tracking`` signal; this module turns that into a Nudge Event on the contact, moves
the Message's delivery status up (never down), and updates consent on hard bounces,
complaints and ESP-side unsubscribes. The ESP's event id dedupes replays.
"""

import hashlib
import logging

from anymail.signals import AnymailTrackingEvent, EventType
from django.db import IntegrityError, transaction

from apps.contacts.consent import ConsentProof, Source
from apps.contacts.models import ConsentStatus, Contact
from apps.contacts.suppression import address_follow_consent
from apps.core import clock
from apps.events.services import event_record

from .models import DELIVERY_RANK, EspEvent, Message
from .services import contact_set_consent

logger = logging.getLogger(__name__)

D = Message.Delivery
# anymail event type -> (Nudge event name, delivery status, Message timestamp field)
TRACKED = {
    EventType.DELIVERED: ("email_delivered", D.DELIVERED, "delivered_at"),
    EventType.OPENED: ("email_opened", D.OPENED, "opened_at"),
    EventType.CLICKED: ("email_clicked", D.CLICKED, "clicked_at"),
    EventType.BOUNCED: ("email_bounced", D.BOUNCED, "bounced_at"),
    EventType.COMPLAINED: ("email_complained", D.COMPLAINED, "complained_at"),
    EventType.UNSUBSCRIBED: ("email_unsubscribed", D.UNSUBSCRIBED, "unsubscribed_at"),
    EventType.DEFERRED: ("email_deferred", None, None),
    EventType.REJECTED: ("email_rejected", None, None),
    EventType.FAILED: ("email_failed", None, None),
}
CONSENT_AFTER = {
    EventType.BOUNCED: ConsentStatus.BOUNCED,
    EventType.COMPLAINED: ConsentStatus.COMPLAINED,
    EventType.UNSUBSCRIBED: ConsentStatus.UNSUBSCRIBED,
}


def on_tracking(sender, event: AnymailTrackingEvent, esp_name: str, **kwargs) -> None:
    """anymail.signals.tracking receiver."""
    event_type = event.event_type
    if event_type == EventType.UNKNOWN and is_unsubscribe(esp_name, event.esp_event):
        event_type = EventType.UNSUBSCRIBED
    if event_type == EventType.BOUNCED and is_soft_bounce(esp_name, event.esp_event):
        # A full mailbox is not a dead address: note it, do not suppress the contact.
        event_type = EventType.DEFERRED
    email_event_record(
        esp=esp_name,
        event_type=event_type,
        event_id=event.event_id,
        message_id=_our_message_id(event.metadata),
        esp_message_id=event.message_id,
        recipient=event.recipient,
        timestamp=event.timestamp,
        click_url=event.click_url,
        # The mail server's own words first: anymail's reject_reason is one word
        # ("bounced") that says nothing the event type does not.
        reason=event.mta_response or event.description or event.reject_reason,
    )


def is_unsubscribe(esp: str, raw) -> bool:
    """Unsubscribes that anymail reports as "unknown": Brevo's "unsubscribed" (the
    name its webhook reference uses; anymail knows "unsubscribe"), and Amazon SES's
    list-management "Subscription" records that opt the recipient out."""
    if not isinstance(raw, dict):
        return False
    esp = esp.lower().replace(" ", "")
    if esp in {"brevo", "sendinblue"}:
        return raw.get("event") in {"unsubscribed", "unsubscribe"}
    if esp == "amazonses" and raw.get("eventType") == "Subscription":
        new = (raw.get("subscription") or {}).get("newTopicPreferences") or {}
        statuses = new.get("topicSubscriptionStatus") or []
        # Nudge has one email consent: opting out of all, or of any topic, is it.
        return bool(new.get("unsubscribeAll")) or any(
            (t or {}).get("subscriptionStatus") == "OptOut" for t in statuses
        )
    return False


def is_soft_bounce(esp: str, raw) -> bool:
    """Anymail reports some ESPs' soft (temporary) bounces as "bounced" too."""
    if not isinstance(raw, dict):
        return False
    esp = esp.lower().replace(" ", "")
    if esp == "postmark":
        return raw.get("Type") in {
            "SoftBounce",
            "Transient",
            "DnsError",
            "AutoResponder",
        }
    if esp in {"brevo", "sendinblue"}:
        return raw.get("event") in {"soft_bounce", "deferred"}
    if esp == "sendgrid":
        return raw.get("type") == "blocked"
    if esp == "amazonses":
        bounce = raw.get("bounce") or {}
        if not bounce and isinstance(raw.get("Message"), str):
            import json

            try:
                bounce = json.loads(raw["Message"]).get("bounce") or {}
            except ValueError:
                bounce = {}
        return bounce.get("bounceType") in {"Transient", "Undetermined"}
    return False


def _our_message_id(metadata) -> int | None:
    try:
        return int((metadata or {}).get("nudge_message_id"))
    except (TypeError, ValueError):
        return None


def email_event_record(
    *,
    esp: str,
    event_type: str,
    event_id: str | None,
    message_id: int | None,
    esp_message_id: str | None = None,
    recipient: str | None = None,
    timestamp=None,
    click_url: str | None = None,
    reason: str | None = None,
) -> bool:
    """Apply one tracking event; False if it was a replay or is not ours."""
    if event_type not in TRACKED:
        return False  # queued / sent: we know that already
    key = event_id or _derived_event_id(
        esp, event_type, esp_message_id, recipient, timestamp, click_url
    )
    # One transaction: the replay guard and the changes it guards land together, so
    # a failure half-way lets the ESP's retry apply the event instead of ignoring it.
    with transaction.atomic():
        message = _find_message(message_id, esp_message_id, recipient)
        if not _claim_esp_event(
            esp=esp, key=key, event_type=event_type, message=message
        ):
            return False
        name, delivery, stamp = TRACKED[event_type]
        if message is not None and delivery:
            _raise_delivery(message, delivery, stamp, timestamp or clock.now())
        if message is not None and (
            message.is_test or message.kind == Message.Kind.NOTIFICATION
        ):
            # A test send (or a team notification) went to staff, not the contact:
            # it says nothing of them, and never counts in reports or segments.
            return True
        contact = message.contact if message else _contact_by_email(recipient)
        if contact is None:
            logger.info("ESP event for no known message or contact", extra={"esp": esp})
            return False
        _apply_to_contact(
            contact,
            message,
            event_type=event_type,
            name=name,
            esp=esp,
            key=key,
            timestamp=timestamp,
            click_url=click_url,
            reason=reason,
            recipient=recipient,
        )
    return True


def _claim_esp_event(
    *, esp: str, key: str, event_type: str, message: Message | None
) -> bool:
    """Record the ESP event once; False if it was recorded before (a replay)."""
    try:
        with transaction.atomic():
            EspEvent.objects.create(
                esp=esp,
                event_id=key[:255],
                event_type=event_type,
                message=message,
                received_at=clock.now(),
            )
    except IntegrityError:
        logger.info("ESP event replayed, ignored", extra={"esp": esp, "event_id": key})
        return False
    return True


def _apply_to_contact(
    contact: Contact,
    message: Message | None,
    *,
    event_type: str,
    name: str,
    esp: str,
    key: str,
    timestamp,
    click_url: str | None,
    reason: str | None,
    recipient: str | None,
) -> None:
    """The Nudge event on the contact; consent after a bounce, complaint, unsubscribe."""
    event_record(
        contact_id=contact.pk,
        name=name,
        properties={
            "message_id": message.pk if message else None,
            "template": message.template.name if message and message.template else None,
            "campaign_id": message.campaign_id if message else None,
            "enrollment_id": message.enrollment_id if message else None,
            "url": click_url,
            "reason": reason,
            "esp": esp,
        },
        dedupe_key=f"esp:{esp}:{key}",
        timestamp=timestamp,
        # a click is the contact's doing (an open may be a mail client's prefetch)
        by_contact=event_type == EventType.CLICKED,
    )
    consent = CONSENT_AFTER.get(event_type)
    if not consent:
        return
    # The address the ESP reported on: the one the message went to, which the
    # contact may have changed since.
    address = (message.recipient if message else None) or recipient or contact.email
    moved_on = bool(contact.email) and address.lower() != contact.email.lower()
    if consent == ConsentStatus.BOUNCED and moved_on:
        # A bounce is about an address, not a person: the old one goes on the
        # list, the contact's new address is not touched.
        address_follow_consent(email=address, status=consent, detail=f"{esp} bounce")
        return
    contact_set_consent(
        contact=contact,
        status=consent,
        reason=f"{esp} {event_type}",
        # No IP: the ESP's server called, not the person.
        proof=ConsentProof(
            source=Source.ESP,
            who=esp,
            form=f"message #{message.pk}" if message else "",
            wording=f"{event_type}: {reason}" if reason else event_type,
        ),
        message=message,
        record_event=False,
        email=address,
    )


def _find_message(
    message_id: int | None, esp_message_id: str | None, recipient: str | None
) -> Message | None:
    queryset = Message.objects.select_related("contact", "template")
    message = None
    if message_id is not None:
        message = queryset.filter(pk=message_id).first()
    if message is None and esp_message_id:
        message = queryset.filter(esp_message_id=esp_message_id).first()
    # Another Nudge (staging, say) on the same ESP account has its own message ids:
    # an event whose recipient is not this message's is not about this message.
    if message and recipient and message.recipient.lower() != recipient.strip().lower():
        return None
    return message


def _contact_by_email(email: str | None) -> Contact | None:
    if not email:
        return None
    return Contact.objects.filter(email__iexact=email.strip()).first()


def _derived_event_id(*parts) -> str:
    # Some ESPs give no event id; the event's own facts make a stable one.
    return "derived:" + hashlib.sha256(repr(parts).encode()).hexdigest()


def _raise_delivery(message: Message, delivery: str, stamp: str, at) -> None:
    lower = [d for d, rank in DELIVERY_RANK.items() if rank < DELIVERY_RANK[delivery]]
    Message.objects.filter(pk=message.pk, delivery__in=lower).update(delivery=delivery)
    Message.objects.filter(pk=message.pk, **{f"{stamp}__isnull": True}).update(
        **{stamp: at}
    )
