"""A person with every kind of data Nudge keeps, built the way it is in production:
calls over real HTTP, a workflow that emails them, ESP webhooks about that email."""

import datetime as dt
import uuid
from dataclasses import dataclass

import httpx
import pytest
from django.core.mail import EmailMessage
from django.core.mail.backends.filebased import EmailBackend as FileBackend

from apps.campaigns.models import EmailTemplate, Message, Topic
from apps.campaigns.tests.webhooks.common import ESP_MESSAGE_IDS, WEBHOOK_SECRET
from apps.campaigns.tests.webhooks.hooks import hook_for, post
from apps.contacts.models import Contact, ContactMerge
from apps.core import clock
from apps.segments.models import ScoringRule, Segment
from apps.segments.services import segment_add_contacts
from apps.workflows.models import Enrollment, TriggerDecision, WebhookDelivery
from apps.workflows.services import workflow_activate, workflow_create

START = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)

# Everything that identifies the person; none may survive an erasure anywhere.
EMAIL = "ada.lovelace@example.org"
USER_ID = "u-ada-1815"
ANONYMOUS_ID = "anon-7f3c9e21-ada"
FIRST = "Augusta"
LAST = "Byron-Kingsley"
PHONE = "+44 20 7946 0815"
IP = "198.51.100.77"
PRODUCT = "Analytical Engine Poster"
CITY = "Marylebone-upon-Thames"
NEEDLES = [EMAIL, USER_ID, ANONYMOUS_ID, FIRST, LAST, PHONE, IP, PRODUCT, CITY]


@pytest.fixture
def frozen_clock():
    with clock.frozen(START):
        yield


@dataclass
class Person:
    contact: Contact
    message: Message
    api: httpx.Client


class Api:
    def __init__(self, url: str, key: str) -> None:
        self.client = httpx.Client(base_url=f"{url}/api/v1", auth=(key, ""), timeout=10)

    def call(self, path: str, **body) -> dict:
        body.setdefault("messageId", str(uuid.uuid4()))
        response = self.client.post(path, json=body)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def person(
    live_server,
    server_source,
    frozen_clock,
    outbox,
    layout,
    settings,
    tmp_path,
    client,
    run_jobs,
) -> Person:
    """Ada: browsed anonymously, identified (merging the anonymous contact), ordered,
    got a workflow email that bounced and was then clicked, in a segment, scored,
    subscribed to a topic, sent a webhook about, refused by a trigger once, and
    written to the file mail backend's outbox."""
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET}
    settings.MAIL_DIR = str(tmp_path / "mail")
    settings.NUDGE_EXPORT_DIR = str(tmp_path / "exports")
    # the backend the data protection officer's requests come from
    server_source.privacy_requests = True
    server_source.save(update_fields=["privacy_requests"])
    api = Api(live_server.url, server_source.key)
    EmailTemplate.objects.create(
        name="Thanks",
        subject="Thanks, {{ contact.first_name }}",
        html_body="<p>Your {{ event.properties.item }} ships to {{ contact.city }}</p>",
        layout=layout,
    )
    workflow = workflow_create(
        name="Order thanks",
        definition={
            "trigger": {"type": "event", "event": "Ordered"},
            "steps": [
                {
                    "key": "thanks",
                    "type": "send_email",
                    "config": {"template": "Thanks"},
                }
            ],
        },
    )
    workflow_activate(workflow=workflow)
    ScoringRule.objects.create(name="Buyer", event_name="Ordered", points=10)
    topic = Topic.objects.create(name="Newsletter", slug="newsletter")

    # given: an anonymous visitor who browses and tells their first name
    api.call(
        "/page",
        anonymousId=ANONYMOUS_ID,
        name=PRODUCT,
        properties={"title": PRODUCT},
        context={"ip": IP},
    )
    api.call("/identify", anonymousId=ANONYMOUS_ID, traits={"firstName": FIRST})
    # then signs up (a known contact), and the two are merged
    api.call(
        "/identify",
        userId=USER_ID,
        traits={"email": EMAIL, "lastName": LAST, "phone": PHONE, "city": CITY},
        context={"ip": IP},
    )
    api.call("/identify", userId=USER_ID, anonymousId=ANONYMOUS_ID)
    run_jobs()
    contact = Contact.objects.get(external_id=USER_ID)
    assert ContactMerge.objects.filter(into=contact).exists()
    api.call("/track", userId=USER_ID, event="Ordered", properties={"item": PRODUCT})
    run_jobs()
    message = Message.objects.get(contact=contact)
    assert message.status == Message.Status.SENT, message.error
    Message.objects.filter(pk=message.pk).update(
        esp_message_id=ESP_MESSAGE_IDS["postmark"]
    )
    message.refresh_from_db()
    for kind in ("bounced", "clicked"):
        assert post(client, hook_for("postmark", kind, message)).status_code == 200
    run_jobs()
    segment = Segment.objects.create(name="Buyers", kind=Segment.Kind.STATIC)
    segment_add_contacts(segment=segment, contact_ids=[contact.pk])
    response = api.client.post(
        "/topics/subscriptions", json={"userId": USER_ID, "topics": {topic.slug: True}}
    )
    assert response.status_code == 200, response.text
    enrollment = Enrollment.objects.get(contact=contact)
    WebhookDelivery.objects.create(
        enrollment=enrollment,
        url=f"https://crm.example.com/people/{USER_ID}?email={EMAIL}",
        payload={"email": EMAIL, "name": f"{FIRST} {LAST}"},
        status=WebhookDelivery.Status.DELIVERED,
        response_status=200,
        next_attempt_at=clock.now(),
        response_body=f'{{"ok": true, "who": "{EMAIL}"}}',
        created_at=clock.now(),
    )
    TriggerDecision.objects.create(
        workflow=workflow,
        contact=contact,
        event_name="Ordered",
        reason=f"already enrolled ({EMAIL})",
        decided_at=clock.now(),
    )
    mailer = FileBackend(file_path=settings.MAIL_DIR)
    mailer.send_messages(
        [
            EmailMessage(f"Hi {FIRST}", f"Your {PRODUCT}", "shop@example.com", [EMAIL]),
            EmailMessage(
                "Hi Grace", "Your order", "shop@example.com", ["g@example.com"]
            ),
        ]
    )
    contact.refresh_from_db()
    return Person(contact=contact, message=message, api=api.client)
