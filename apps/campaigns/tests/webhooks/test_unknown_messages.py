"""Test sends, and events for messages Nudge does not know (or for someone else)."""

import pytest

from apps.campaigns.models import Message
from apps.contacts.models import ConsentStatus, Contact
from apps.events.models import Event

from .common import CONTACT_EMAIL, ESPS, MARKETER_EMAIL, MARKS, UNKNOWN_ESP_MESSAGE_IDS
from .hooks import BUILDERS, hook_for, post

pytestmark = MARKS


# -- 5. test sends ---------------------------------------------------------------------


@pytest.mark.parametrize("esp", ESPS)
def test_a_bounce_of_a_test_message_leaves_the_contact_consent_alone(
    client, esp, contact, sent_message
):
    # given a test send rendered for the contact but delivered to the marketer
    message = sent_message(esp, is_test=True, to_email=MARKETER_EMAIL)
    # when
    response = post(client, hook_for(esp, "bounced", message))
    # then
    assert response.status_code == 200
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.SUBSCRIBED
    message.refresh_from_db()
    assert message.delivery == Message.Delivery.BOUNCED
    # and the contact's history shows nothing: the email never went to them
    assert not Event.objects.filter(contact=contact).exists()


# -- 6. events for messages we do not know ---------------------------------------------


@pytest.mark.parametrize("esp", ESPS)
def test_an_event_for_an_unknown_message_is_recorded_on_the_contact_with_its_email(
    client, esp, contact, sent_message
):
    # given a message of ours that the event is not about
    ours = sent_message(esp)
    hook = BUILDERS[esp](
        "delivered",
        message_id=None,
        esp_id=UNKNOWN_ESP_MESSAGE_IDS[esp],
        to=CONTACT_EMAIL.upper(),
    )
    # when
    response = post(client, hook)
    # then
    assert response.status_code == 200
    [event] = Event.objects.filter(contact=contact)
    assert event.name == "email_delivered"
    assert event.properties["message_id"] is None
    ours.refresh_from_db()
    assert ours.delivery == Message.Delivery.NONE


@pytest.mark.parametrize("esp", ESPS)
def test_an_event_for_an_unknown_message_and_recipient_is_ignored(
    client, esp, contact, sent_message
):
    # given
    ours = sent_message(esp)
    hook = BUILDERS[esp](
        "bounced",
        message_id=None,
        esp_id=UNKNOWN_ESP_MESSAGE_IDS[esp],
        to="stranger@example.net",
    )
    # when
    response = post(client, hook)
    # then
    assert response.status_code == 200
    assert not Event.objects.exists()
    assert not Contact.objects.filter(email="stranger@example.net").exists()
    ours.refresh_from_db()
    contact.refresh_from_db()
    assert ours.delivery == Message.Delivery.NONE
    assert contact.email_consent == ConsentStatus.SUBSCRIBED


def test_an_event_naming_our_message_id_for_another_recipient_is_not_applied(
    contact, sent_message
):
    # given a message of ours, and another Nudge (staging) on the same ESP account
    from apps.campaigns.tracking import email_event_record

    message = sent_message("postmark")
    # when an event arrives with our message id but someone else's address
    applied = email_event_record(
        esp="Postmark",
        event_type="bounced",
        event_id="staging-1",
        message_id=message.pk,
        recipient="someone@staging.example",
    )
    # then it is not applied to our message or contact
    assert not applied
    message.refresh_from_db()
    assert message.delivery == Message.Delivery.NONE
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.SUBSCRIBED
