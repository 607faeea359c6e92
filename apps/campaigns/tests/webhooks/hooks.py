"""Posting an ESP's webhook for a message, as that ESP would."""

import base64

from apps.campaigns.models import Message
from apps.contacts.models import Contact
from apps.events.models import Event

from .amazon_ses import amazon_ses
from .brevo import brevo
from .common import (
    WEBHOOK_SECRET,
    Hook,
)
from .mailgun import mailgun
from .postmark import postmark
from .sendgrid import sendgrid

BUILDERS = {
    "sendgrid": sendgrid,
    "mailgun": mailgun,
    "postmark": postmark,
    "amazon_ses": amazon_ses,
    "brevo": brevo,
}


def basic_auth(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def post(client, hook: Hook, *, credentials: str | None = WEBHOOK_SECRET):
    headers = dict(hook.headers)
    if credentials is not None:
        headers["Authorization"] = basic_auth(credentials)
    return client.post(
        hook.path, data=hook.body, content_type=hook.content_type, headers=headers
    )


def hook_for(esp: str, kind: str, message: Message, *, metadata: bool = True) -> Hook:
    return BUILDERS[esp](
        kind,
        message_id=message.pk if metadata else None,
        esp_id=message.esp_message_id,
        to=message.recipient,
    )


def event_names(contact: Contact) -> list[str]:
    return list(
        Event.objects.filter(contact=contact)
        .order_by("pk")
        .values_list("name", flat=True)
    )
