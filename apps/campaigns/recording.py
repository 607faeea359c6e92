"""Recording handed-over messages as sent: the row (sent, when, the ESP's id, the
subject as it went) and its ``email_sent`` event, for many messages in one
transaction.

A batch send records what it handed over every RECORD_EVERY messages (and at its
end): two statements for them all instead of five per message. A worker killed
between a hand-over and its record leaves that message in ``sending``, which the
tick turns ``uncertain`` (never sent again): that is at most RECORD_EVERY messages
rather than one, and none of them is sent twice.
"""

import datetime as dt
import logging
from dataclasses import dataclass

from django.db import connection, transaction

from apps.core import clock
from apps.events.services import InternalEvent, events_record_many

from .models import Message

logger = logging.getLogger(__name__)

# Handed-over messages recorded together (see the module's docstring).
RECORD_EVERY = 25


@dataclass(frozen=True)
class HandedOver:
    """A message the ESP took, not yet recorded."""

    message: Message
    esp_message_id: str
    subject: str
    sent_at: dt.datetime


def handed_over(message: Message, email, subject: str) -> HandedOver:
    status = getattr(email, "anymail_status", None)
    esp_id = status.message_id if status else None
    if esp_id is None:  # Django's own backends (file, SMTP) return no ESP id
        esp_id = message.message_id_header
    return HandedOver(message, str(esp_id)[:255], subject, clock.now())


def messages_record_sent(*, sent: list[HandedOver]) -> None:
    """sending -> sent for each, with its ``email_sent`` event (for a contact's
    own email), in one transaction. A message no longer ``sending`` (the tick
    gave up on it) is left as it is, as one by one."""
    if not sent:
        return
    with transaction.atomic():
        _mark_sent(sent)
        events_record_many(
            events=[
                InternalEvent(
                    contact_id=s.message.contact_id,
                    name="email_sent",
                    properties={
                        "message_id": s.message.pk,
                        "template": s.message.template.name
                        if s.message.template
                        else None,
                        "campaign_id": s.message.campaign_id,
                        "enrollment_id": s.message.enrollment_id,
                    },
                    dedupe_key=f"sent:{s.message.pk}",
                )
                for s in sent
                if s.message.kind != Message.Kind.NOTIFICATION and not s.message.is_test
            ]
        )
    for s in sent:
        logger.info(
            "message sent",
            extra={
                "message_id": s.message.pk,
                "contact_id": s.message.contact_id,
                "esp_message_id": s.esp_message_id,
            },
        )


def _mark_sent(sent: list[HandedOver]) -> None:
    table = Message._meta.db_table
    if connection.vendor != "postgresql":
        # SQLite (the zero-setup demo): one small UPDATE each, in the transaction.
        with connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {table} SET status = %s, sent_at = %s, "  # noqa: S608
                f"esp_message_id = %s, subject = %s, error = '' "
                f"WHERE id = %s AND status = %s",
                [
                    [
                        Message.Status.SENT,
                        s.sent_at,
                        s.esp_message_id,
                        s.subject,
                        s.message.pk,
                        Message.Status.SENDING,
                    ]
                    for s in sent
                ],
            )
        return
    rows = ", ".join(["(%s::bigint, %s::timestamptz, %s::text, %s::text)"] * len(sent))
    params = []
    for s in sent:
        params += [s.message.pk, s.sent_at, s.esp_message_id, s.subject]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS m SET status = %s, sent_at = v.sent_at, "  # noqa: S608
            f"esp_message_id = v.esp_message_id, subject = v.subject, error = '' "
            f"FROM (VALUES {rows}) AS v(id, sent_at, esp_message_id, subject) "
            f"WHERE m.id = v.id AND m.status = %s",
            [Message.Status.SENT, *params, Message.Status.SENDING],
        )
