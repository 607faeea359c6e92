"""The contact, template and sent message that ESP webhooks are about."""

import pytest

from apps.campaigns.models import EmailTemplate, Message
from apps.contacts.models import Contact
from apps.core import clock

from .common import CONTACT_EMAIL, ESP_MESSAGE_IDS, MAILGUN_SIGNING_KEY, WEBHOOK_SECRET


@pytest.fixture(autouse=True)
def anymail_settings(settings):
    settings.ANYMAIL = {
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_SIGNING_KEY,
    }


@pytest.fixture
def contact(db):
    return Contact.objects.create(email=CONTACT_EMAIL)


@pytest.fixture
def template(db):
    return EmailTemplate.objects.create(
        name="Welcome",
        subject="Welcome, {{ contact.first_name }}",
        html_body="<p>Hi</p>",
    )


@pytest.fixture
def sent_message(contact, template):
    """The message Nudge sent through ``esp``, as the send job left it."""

    def make(esp: str, **fields) -> Message:
        now = clock.now()
        fields = {"esp_message_id": ESP_MESSAGE_IDS[esp], **fields}
        return Message.objects.create(
            contact=contact,
            template=template,
            created_at=now,
            send_after=now,
            sent_at=now,
            status=Message.Status.SENT,
            **fields,
        )

    return make
