"""Each event type, from each ESP, lands once: an Event on the contact, the
message's delivery (which only moves up) and consent where one is due."""

import json

import pytest

from apps.campaigns.models import Message
from apps.contacts.models import ConsentStatus
from apps.events.models import Event

from .common import (
    AMAZON_SES,
    CLICK_URL,
    ESP_NAMES,
    ESPS,
    ESPS_WITH_UNSUBSCRIBE,
    MARKS,
    Hook,
)
from .hooks import event_names, hook_for, post

pytestmark = MARKS


# -- 1. each event type, from each ESP -------------------------------------------------


@pytest.mark.parametrize("esp", ESPS)
def test_a_delivered_event_marks_the_message_delivered_and_records_email_delivered(
    client, esp, contact, sent_message
):
    # given
    message = sent_message(esp)
    # when
    response = post(client, hook_for(esp, "delivered", message))
    # then
    assert response.status_code == 200
    message.refresh_from_db()
    assert message.delivery == Message.Delivery.DELIVERED
    assert message.delivered_at is not None
    [event] = Event.objects.filter(contact=contact)
    assert event.name == "email_delivered"
    assert event.properties["message_id"] == message.pk
    assert event.properties["template"] == "Welcome"
    assert event.properties["esp"] == ESP_NAMES[esp]
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.SUBSCRIBED


@pytest.mark.parametrize("esp", ESPS)
def test_a_hard_bounce_marks_the_message_and_the_contact_bounced(
    client, esp, contact, sent_message
):
    # given
    message = sent_message(esp)
    # when
    response = post(client, hook_for(esp, "bounced", message))
    # then
    assert response.status_code == 200
    message.refresh_from_db()
    assert message.delivery == Message.Delivery.BOUNCED
    assert message.bounced_at is not None
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.BOUNCED
    assert event_names(contact) == ["email_bounced"]
    event = Event.objects.get(contact=contact)
    assert event.properties["message_id"] == message.pk
    assert event.properties["reason"]


@pytest.mark.parametrize("esp", ESPS)
def test_an_open_marks_the_message_opened_and_records_email_opened(
    client, esp, contact, sent_message
):
    # given
    message = sent_message(esp)
    # when
    response = post(client, hook_for(esp, "opened", message))
    # then
    assert response.status_code == 200
    message.refresh_from_db()
    assert message.delivery == Message.Delivery.OPENED
    assert message.opened_at is not None
    assert event_names(contact) == ["email_opened"]
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.SUBSCRIBED


@pytest.mark.parametrize("esp", ESPS)
def test_a_click_marks_the_message_clicked_and_records_email_clicked_with_the_url(
    client, esp, contact, sent_message
):
    # given
    message = sent_message(esp)
    # when
    response = post(client, hook_for(esp, "clicked", message))
    # then
    assert response.status_code == 200
    message.refresh_from_db()
    assert message.delivery == Message.Delivery.CLICKED
    assert message.clicked_at is not None
    [event] = Event.objects.filter(contact=contact)
    assert event.name == "email_clicked"
    assert event.properties["url"] == CLICK_URL
    assert event.properties["message_id"] == message.pk


@pytest.mark.parametrize("esp", ESPS)
def test_a_spam_complaint_marks_the_message_and_the_contact_complained(
    client, esp, contact, sent_message
):
    # given
    message = sent_message(esp)
    # when
    response = post(client, hook_for(esp, "complained", message))
    # then
    assert response.status_code == 200
    message.refresh_from_db()
    assert message.delivery == Message.Delivery.COMPLAINED
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.COMPLAINED
    assert event_names(contact) == ["email_complained"]


@pytest.mark.parametrize("esp", ESPS_WITH_UNSUBSCRIBE)
def test_an_unsubscribe_at_the_esp_marks_the_message_and_the_contact_unsubscribed(
    client, esp, contact, sent_message
):
    # given
    message = sent_message(esp)
    # when
    response = post(client, hook_for(esp, "unsubscribed", message))
    # then
    assert response.status_code == 200
    message.refresh_from_db()
    assert message.delivery == Message.Delivery.UNSUBSCRIBED
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.UNSUBSCRIBED
    assert event_names(contact) == ["email_unsubscribed"]


def test_brevos_documented_unsubscribed_event_unsubscribes_the_contact(
    client, contact, sent_message
):
    # given a message sent through Brevo
    message = sent_message("brevo")
    # when Brevo posts the event as its reference names it ("unsubscribed")
    response = post(client, hook_for("brevo", "unsubscribed_documented", message))
    # then it is applied, not answered 200 and dropped
    assert response.status_code == 200
    message.refresh_from_db()
    assert message.delivery == Message.Delivery.UNSUBSCRIBED
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.UNSUBSCRIBED
    assert event_names(contact) == ["email_unsubscribed"]


# The mail server's own words, as each ESP reports them in its bounce sample.
BOUNCE_TEXT = {
    "mailgun": "5.1.1 The email account that you tried to reach does not exist.",
    "postmark": "smtp;550 5.1.1 The email account that you tried to reach does not "
    "exist.",
    AMAZON_SES: "smtp; 550 5.1.1 user unknown",
    "brevo": "550 5.1.1 user unknown",
}


@pytest.mark.parametrize("esp", sorted(BOUNCE_TEXT))
def test_a_bounce_keeps_the_mail_servers_reason(client, esp, contact, sent_message):
    message = sent_message(esp)

    post(client, hook_for(esp, "bounced", message))

    event = Event.objects.get(contact=contact, name="email_bounced")
    assert event.properties["reason"].startswith(BOUNCE_TEXT[esp][:40])


@pytest.mark.parametrize("esp", ESPS)
def test_an_event_without_our_metadata_is_matched_by_the_esp_message_id(
    client, esp, contact, sent_message
):
    # given a message whose ESP dropped our metadata from the event
    message = sent_message(esp)
    other = sent_message(esp, esp_message_id="some-other-esp-id")
    # when
    response = post(client, hook_for(esp, "delivered", message, metadata=False))
    # then
    assert response.status_code == 200
    message.refresh_from_db()
    other.refresh_from_db()
    assert message.delivery == Message.Delivery.DELIVERED
    assert other.delivery == Message.Delivery.NONE
    [event] = Event.objects.filter(contact=contact)
    assert event.properties["message_id"] == message.pk


def test_a_sendgrid_batch_applies_every_event_in_it(client, contact, sent_message):
    # given SendGrid's usual post: several events in one JSON array
    message = sent_message("sendgrid")
    events = [
        json.loads(hook_for("sendgrid", kind, message).body)[0]
        for kind in ("delivered", "opened", "clicked")
    ]
    hook = Hook("/webhooks/anymail/sendgrid/tracking/", json.dumps(events))
    # when
    response = post(client, hook)
    # then
    assert response.status_code == 200
    message.refresh_from_db()
    assert message.delivery == Message.Delivery.CLICKED
    assert event_names(contact) == ["email_delivered", "email_opened", "email_clicked"]


def test_a_mailgun_temporary_failure_is_a_deferral_that_leaves_consent_alone(
    client, contact, sent_message
):
    # given
    message = sent_message("mailgun")
    # when
    response = post(client, hook_for("mailgun", "deferred", message))
    # then
    assert response.status_code == 200
    message.refresh_from_db()
    assert message.delivery == Message.Delivery.NONE
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.SUBSCRIBED
    assert event_names(contact) == ["email_deferred"]


@pytest.mark.parametrize(
    "esp",
    [
        "postmark",  # Bounce with Type "SoftBounce"
        AMAZON_SES,  # Bounce with bounceType "Transient"
        "brevo",  # "soft_bounce"
    ],
)
def test_a_soft_bounce_does_not_mark_the_contact_bounced(
    client, esp, contact, sent_message
):
    # given
    message = sent_message(esp)
    # when
    response = post(client, hook_for(esp, "soft_bounced", message))
    # then
    assert response.status_code == 200
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.SUBSCRIBED


# -- 2. delivery only moves up ---------------------------------------------------------


@pytest.mark.parametrize("esp", ESPS)
def test_a_late_delivered_after_a_bounce_leaves_the_message_bounced(
    client, esp, contact, sent_message
):
    # given
    message = sent_message(esp)
    assert post(client, hook_for(esp, "bounced", message)).status_code == 200
    # when
    response = post(client, hook_for(esp, "delivered", message))
    # then
    assert response.status_code == 200
    message.refresh_from_db()
    assert message.delivery == Message.Delivery.BOUNCED
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.BOUNCED


@pytest.mark.parametrize("esp", ESPS)
def test_a_bounce_for_an_address_the_contact_has_since_changed_lists_that_address(
    client, esp, contact, sent_message
):
    from apps.contacts.suppression import address_suppression

    # given a message sent to the contact's old address, which they changed since
    message = sent_message(esp, to_email="old@example.com")
    contact.email = "new@example.com"
    contact.save(update_fields=["email"])
    # when the ESP reports a hard bounce for the old one
    response = post(client, hook_for(esp, "bounced", message))
    # then the old address is listed, the new one and the person are not touched
    assert response.status_code == 200
    assert address_suppression("old@example.com").reason == "bounced"
    assert address_suppression("new@example.com") is None
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.SUBSCRIBED
    # and a complaint, which is the person's, still stops their email
    post(client, hook_for(esp, "complained", message))
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.COMPLAINED
    assert address_suppression("old@example.com").reason == "complained"
