"""Double opt-in: a person a double opt-in source adds stays ``pending`` until they
click the link in a confirmation email; the unconfirmed are deleted after a while.

- Ingestion creates that source's new contacts ``pending`` (events/optin.py).
- When such a contact's address becomes known (an identify), the EVENTS_INGESTED
  hook sends one confirmation email (kind CONFIRMATION: sent only while they are
  pending; at most one a day, however often the shop identifies them).
- The signed link leads to a page whose button (a POST: link scanners only GET)
  makes them ``subscribed``, recorded as their own choice with the email_subscribed
  event that starts a welcome workflow. It confirms only the address it was sent
  to, and only for NUDGE_DOUBLE_OPT_IN_PURGE_DAYS (confirmation_link_void).
- The daily retention job deletes contacts still pending
  NUDGE_DOUBLE_OPT_IN_PURGE_DAYS after their confirmation email (unconfirmed_since).
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from apps.contacts.consent import ConsentProof
from apps.contacts.models import ConsentStatus, Contact
from apps.core import clock
from apps.events.models import Event

from .models import EmailLayout, EmailTemplate, Message
from .services import contact_set_consent, message_create

logger = logging.getLogger(__name__)

# However often a pending person is identified, one confirmation email a day.
RESEND_AFTER = dt.timedelta(days=1)

SUBJECT = "Please confirm your subscription"
HTML = """<p>Hi {{ contact.first_name | default: 'there' }},</p>
<p>Please confirm that you want emails from {{ company.name }}:</p>
<p><a href="{{ confirm_url }}">Yes, subscribe me</a></p>
<p>If you did not ask for this, ignore this email: we will not write again, and we
delete your address after a while.</p>"""


def confirmation_template() -> EmailTemplate:
    """The template of the confirmation email (made on first use; editable)."""
    template = EmailTemplate.objects.filter(
        name=settings.NUDGE_DOUBLE_OPT_IN_TEMPLATE
    ).first()
    if template is None:
        template, _ = EmailTemplate.objects.get_or_create(
            name=settings.NUDGE_DOUBLE_OPT_IN_TEMPLATE,
            defaults={
                "subject": SUBJECT,
                "html_body": HTML,
                "layout": EmailLayout.objects.filter(is_default=True).first(),
                # The link is the point of the email: not through the redirect.
                "track_clicks": False,
            },
        )
    return template


def confirmations_for_identifies(*, events: list[Event]) -> None:
    """EVENTS_INGESTED hook: a confirmation email to each pending contact an
    identify gave an address."""
    contact_ids = {e.contact_id for e in events if e.type == Event.Type.IDENTIFY}
    if not contact_ids:
        return
    pending = Contact.objects.filter(
        pk__in=contact_ids, email_consent=ConsentStatus.PENDING, email__isnull=False
    ).values_list("pk", flat=True)
    for contact_id in pending:
        confirmation_send(contact_id=contact_id)


def confirmation_send(*, contact_id: int) -> Message | None:
    """Queue the confirmation email, unless one went in the last day or the
    contact is no longer pending; the contact's row lock makes two jobs send one."""
    with transaction.atomic():
        contact = (
            Contact.objects.select_for_update()
            .filter(pk=contact_id, email_consent=ConsentStatus.PENDING)
            .exclude(email=None)
            .first()
        )
        if contact is None:
            return None
        # (one to an address the contact no longer has does not count: its link
        # no longer confirms, confirmation_link_void)
        recent = Message.objects.filter(
            Q(to_email="") | Q(to_email__iexact=contact.email),
            contact_id=contact_id,
            kind=Message.Kind.CONFIRMATION,
            created_at__gt=clock.now() - RESEND_AFTER,
        )
        if recent.exists():
            return None
        message, _ = message_create(
            contact=contact, template=confirmation_template(), confirmation=True
        )
    logger.info(
        "confirmation email queued",
        extra={"contact_id": contact_id, "message_id": message.pk},
    )
    return message


def contact_confirm(
    *, contact: Contact, message: Message | None, proof: ConsentProof
) -> bool:
    """The person clicked their confirmation link: subscribed, by their own
    choice (``proof``: the link, their IP, the button's words); True if that
    changed their consent."""
    if contact.email_consent != ConsentStatus.PENDING:
        return False
    return contact_set_consent(
        contact=contact,
        status=ConsentStatus.SUBSCRIBED,
        reason="confirmed by the link in the confirmation email (double opt-in)",
        proof=proof,
        message=message,
    )


def confirmation_link_void(*, message: Message, contact: Contact) -> str | None:
    """Why the link in this confirmation email no longer confirms, or None:
    "address" when it went to another address than the contact's now (a link
    confirms the address it was sent to, not whatever the contact holds since),
    "expired" when it is older than NUDGE_DOUBLE_OPT_IN_PURGE_DAYS (by then the
    unconfirmed are deleted; signing up again sends a fresh one)."""
    sent_to = (message.to_email or "").lower()
    if sent_to and sent_to != (contact.email or "").lower():
        return "address"
    days = settings.NUDGE_DOUBLE_OPT_IN_PURGE_DAYS
    if days > 0 and message.created_at < clock.now() - dt.timedelta(days=days):
        return "expired"
    return None


def unconfirmed_since(cutoff: dt.datetime) -> QuerySet[Contact]:
    """Contacts still pending whose last confirmation email went before ``cutoff``:
    the retention job deletes them (apps/privacy/retention, the setting
    NUDGE_DOUBLE_OPT_IN_PURGE_DAYS)."""
    confirmations = Message.objects.filter(
        contact_id=OuterRef("pk"), kind=Message.Kind.CONFIRMATION
    )
    return Contact.objects.filter(
        Exists(confirmations.filter(created_at__lt=cutoff)),
        ~Exists(confirmations.filter(created_at__gte=cutoff)),
        email_consent=ConsentStatus.PENDING,
        erased_at__isnull=True,
    )
