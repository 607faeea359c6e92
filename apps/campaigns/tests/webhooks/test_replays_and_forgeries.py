"""A replayed webhook changes nothing the second time; a forged or unsigned one
changes nothing at all."""

import json

import pytest

from apps.campaigns.models import EspEvent, Message
from apps.contacts.models import ConsentStatus, Contact
from apps.events.models import Event

from .common import AMAZON_SES, CONTACT_EMAIL, ESP_NAMES, ESPS, MARKS, Hook
from .hooks import event_names, hook_for, post
from .mailgun import mailgun

pytestmark = MARKS


# -- 3. replays ------------------------------------------------------------------------


@pytest.mark.parametrize("esp", ESPS)
@pytest.mark.parametrize("kind", ["delivered", "bounced"])
def test_a_replayed_webhook_records_one_event_and_answers_200_both_times(
    client, esp, kind, contact, sent_message
):
    # given
    message = sent_message(esp)
    hook = hook_for(esp, kind, message)
    # when
    first = post(client, hook)
    again = post(client, hook)
    # then
    assert (first.status_code, again.status_code) == (200, 200)
    assert Event.objects.filter(contact=contact).count() == 1
    assert EspEvent.objects.filter(esp=ESP_NAMES[esp]).count() == 1


def test_a_mailgun_signature_reused_on_another_event_is_ignored_as_a_replay(
    client, contact, sent_message
):
    # given a signed delivered event we accepted, whose signature block (Mailgun signs
    # only timestamp + token, not the event) an attacker copies onto a bounce
    message = sent_message("mailgun")
    delivered = hook_for("mailgun", "delivered", message)
    assert post(client, delivered).status_code == 200
    token = json.loads(delivered.body)["signature"]["token"]
    forged = mailgun("bounced", message_id=message.pk, esp_id="x", to=CONTACT_EMAIL)
    forged_body = json.loads(forged.body)
    forged_body["signature"] = json.loads(delivered.body)["signature"]
    assert forged_body["signature"]["token"] == token
    # when
    response = post(client, forged._replace(body=json.dumps(forged_body)))
    # then
    assert response.status_code == 200
    message.refresh_from_db()
    assert message.delivery == Message.Delivery.DELIVERED
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.SUBSCRIBED
    assert event_names(contact) == ["email_delivered"]


# -- 4. forgeries ----------------------------------------------------------------------


def assert_nothing_changed(message: Message, contact: Contact) -> None:
    message.refresh_from_db()
    contact.refresh_from_db()
    assert message.delivery == Message.Delivery.NONE
    assert message.bounced_at is None
    assert contact.email_consent == ConsentStatus.SUBSCRIBED
    assert not Event.objects.filter(contact=contact).exists()
    assert not EspEvent.objects.exists()


@pytest.mark.parametrize("esp", ESPS)
def test_a_webhook_with_wrong_credentials_is_rejected_and_changes_nothing(
    client, esp, contact, sent_message
):
    # given
    message = sent_message(esp)
    # when
    response = post(
        client, hook_for(esp, "bounced", message), credentials="nudge-esp:guessed"
    )
    # then
    assert response.status_code == 400
    assert_nothing_changed(message, contact)


@pytest.mark.parametrize("esp", ESPS)
def test_a_webhook_without_credentials_is_rejected_and_changes_nothing(
    client, esp, contact, sent_message
):
    # given
    message = sent_message(esp)
    # when
    response = post(client, hook_for(esp, "bounced", message), credentials=None)
    # then: SNS only sends credentials after a 401 challenge; the others get a 400
    assert response.status_code == (401 if esp == "amazon_ses" else 400)
    assert_nothing_changed(message, contact)


@pytest.mark.parametrize(
    "signing_key", ["not-our-signing-key", ""], ids=["wrong-key", "empty-key"]
)
def test_a_mailgun_webhook_with_a_bad_signature_is_rejected_and_changes_nothing(
    client, signing_key, contact, sent_message
):
    # given the right Basic auth, but a signature not made with our signing key
    message = sent_message("mailgun")
    hook = mailgun(
        "bounced",
        message_id=message.pk,
        esp_id=message.esp_message_id,
        to=CONTACT_EMAIL,
        signing_key=signing_key,
    )
    # when
    response = post(client, hook)
    # then
    assert response.status_code == 400
    assert_nothing_changed(message, contact)


def test_a_mailgun_webhook_with_no_signature_is_rejected_and_changes_nothing(
    client, contact, sent_message
):
    # given
    message = sent_message("mailgun")
    body = json.loads(hook_for("mailgun", "bounced", message).body)
    del body["signature"]
    # when
    response = post(
        client, Hook("/webhooks/anymail/mailgun/tracking/", json.dumps(body))
    )
    # then
    assert response.status_code == 400
    assert_nothing_changed(message, contact)


@pytest.mark.parametrize("esp", [AMAZON_SES])
def test_an_sns_post_whose_headers_do_not_match_its_body_is_rejected(
    client, esp, contact, sent_message
):
    # given a Notification body posted with another message's x-amz-sns-message-id
    message = sent_message(esp)
    hook = hook_for(esp, "bounced", message)
    hook = hook._replace(headers={**hook.headers, "x-amz-sns-message-id": "other"})
    # when
    response = post(client, hook)
    # then
    assert response.status_code == 400
    assert_nothing_changed(message, contact)
