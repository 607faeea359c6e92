"""What Nudge adds in front of anymail's webhooks: no secret, no webhooks (outside
the demo); a malformed body is a 400; an old Mailgun signature is a replay."""

import datetime as dt
import json
import logging

import pytest
from django.core import checks

from apps.campaigns.models import EspEvent, Message
from apps.contacts.models import ConsentStatus
from apps.core import clock

from .common import (
    AMAZON_SES,
    CONTACT_EMAIL,
    ESPS,
    MAILGUN_SIGNING_KEY,
    MARKS,
    WEBHOOK_SECRET,
    Hook,
)
from .hooks import BUILDERS, basic_auth, hook_for, post
from .mailgun import mailgun
from .test_replays_and_forgeries import assert_nothing_changed

pytestmark = MARKS

AT = dt.datetime(2031, 5, 6, 12, 0, tzinfo=dt.UTC)


# -- no secret, no webhooks ------------------------------------------------------------


@pytest.mark.parametrize("esp", ESPS)
def test_with_debug_off_and_no_secret_a_webhook_is_refused_with_a_403_saying_why(
    client, settings, esp, contact, sent_message, caplog
):
    # given a server outside the demo whose operator set no ANYMAIL_WEBHOOK_SECRET
    settings.DEBUG = False
    settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_SIGNING_KEY}
    message = sent_message(esp)
    # when anyone posts a bounce
    with caplog.at_level(logging.ERROR, logger="apps.campaigns.webhooks"):
        response = post(client, hook_for(esp, "bounced", message), credentials=None)
    # then
    assert response.status_code == 403
    assert "ANYMAIL_WEBHOOK_SECRET" in response.content.decode()
    assert "ANYMAIL_WEBHOOK_SECRET" in caplog.text
    assert_nothing_changed(message, contact)


@pytest.mark.parametrize(
    "debug,secret,warned", [(False, "", True), (False, "u:p", False), (True, "", False)]
)
def test_the_system_check_warns_when_webhooks_are_refused_for_want_of_a_secret(
    settings, debug, secret, warned
):
    # given
    settings.DEBUG = debug
    settings.ANYMAIL = {"WEBHOOK_SECRET": secret} if secret else {}
    # when
    messages = checks.run_checks(tags=[checks.Tags.security])
    # then
    assert ("nudge.W011" in [m.id for m in messages]) is warned


@pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailInsecureWebhookWarning")
def test_in_the_demo_a_webhook_without_a_secret_is_still_accepted(
    client, settings, contact, sent_message
):
    # given the demo (DEBUG on), no secret set
    settings.DEBUG = True
    settings.ANYMAIL = {}
    message = sent_message("postmark")
    # when
    response = post(
        client, hook_for("postmark", "delivered", message), credentials=None
    )
    # then
    assert response.status_code == 200
    message.refresh_from_db()
    assert message.delivery == Message.Delivery.DELIVERED


def test_mailgun_webhooks_without_a_signing_key_are_refused_with_a_403(
    client, settings, contact, sent_message
):
    # given a secret, but no Mailgun signing key to check its signatures with
    settings.ANYMAIL = {"WEBHOOK_SECRET": settings.ANYMAIL["WEBHOOK_SECRET"]}
    message = sent_message("mailgun")
    # when
    response = post(client, hook_for("mailgun", "bounced", message))
    # then
    assert response.status_code == 403
    assert "Mailgun webhooks are not configured" in response.content.decode()
    assert_nothing_changed(message, contact)


def test_anymail_inbound_webhook_urls_are_not_served(client):
    # Nudge reads no inbound mail: an inbound URL would only be something to attack.
    for esp in ["postmark", "mailgun", "brevo", "amazon_ses", "sendgrid"]:
        response = post(client, Hook(f"/webhooks/anymail/{esp}/inbound/", "{}"))
        assert response.status_code == 404, esp


# -- malformed bodies ------------------------------------------------------------------

# Bodies that each raised inside anymail's parsing (a 500) before Nudge caught them.
MALFORMED_BODIES = {
    "brevo": ["[]", "[1]", '"text"', "null", "not json", '{"event": []}', "\xff"],
    "postmark": ["[]", "[1]", '"text"', "null", "not json", "\xff"],
    "mailgun": ["[]", '"text"', "null", '{"signature": []}'],
    "sendgrid": ["[1]", '"text"', "null", "not json", '{"a": 1}', '[{"event": []}]'],
    AMAZON_SES: ["[]", '"text"', "null", "not json", "{}"],
}


@pytest.mark.parametrize(
    "esp,body",
    [(esp, body) for esp, bodies in MALFORMED_BODIES.items() for body in bodies],
)
def test_a_malformed_body_gets_a_400_that_says_so_and_changes_nothing(
    client, esp, body, contact, sent_message
):
    # given a caller with the right credentials and a body of the wrong shape
    message = sent_message(esp)
    client.raise_request_exception = False
    # when
    response = post(client, Hook(f"/webhooks/anymail/{esp}/tracking/", body))
    # then
    assert response.status_code == 400
    assert "Malformed" in response.content.decode()
    assert_nothing_changed(message, contact)


def test_an_inbound_message_posted_to_the_postmark_tracking_url_gets_a_400(
    client, contact, sent_message
):
    # given an inbound message (anymail raises a configuration error on it) posted
    # to the tracking URL
    message = sent_message("postmark")
    body = json.dumps({"FromFull": {"Email": "someone@example.com"}, "Subject": "Hi"})
    client.raise_request_exception = False
    # when
    response = post(client, Hook("/webhooks/anymail/postmark/tracking/", body))
    # then
    assert response.status_code == 400
    assert_nothing_changed(message, contact)


@pytest.mark.parametrize("esp", ESPS)
def test_a_nul_character_in_the_recipient_gets_a_400_not_a_500(
    client, esp, contact, sent_message
):
    # given a bounce whose address holds a NUL, which PostgreSQL cannot store
    message = sent_message(esp)
    hook = BUILDERS[esp](
        "bounced",
        message_id=message.pk,
        esp_id=message.esp_message_id,
        to="ada\x00@example.com",
    )
    client.raise_request_exception = False
    # when
    response = post(client, hook)
    # then
    assert response.status_code == 400
    assert_nothing_changed(message, contact)


@pytest.mark.parametrize("esp,field", [("postmark", "Email"), ("brevo", "email")])
def test_a_number_where_the_address_belongs_gets_a_400_not_a_500(
    client, esp, field, contact, sent_message
):
    # given
    message = sent_message(esp)
    hook = hook_for(esp, "bounced", message)
    body = json.loads(hook.body) | {field: 5}
    client.raise_request_exception = False
    # when
    response = post(client, hook._replace(body=json.dumps(body)))
    # then
    assert response.status_code == 400
    assert_nothing_changed(message, contact)


# -- Mailgun replays -------------------------------------------------------------------


@pytest.mark.parametrize(
    "signed_seconds_ago,status",
    [(0, 200), (299, 200), (301, 400), (3600, 400), (-301, 400)],
    ids=["now", "just-in-time", "just-too-old", "an-hour-old", "from-the-future"],
)
def test_a_mailgun_signature_is_good_for_five_minutes(
    client, signed_seconds_ago, status, contact, sent_message
):
    # given a bounce Mailgun signed some time ago (or claims it will sign)
    message = sent_message("mailgun")
    with clock.frozen(AT):
        hook = mailgun(
            "bounced",
            message_id=message.pk,
            esp_id=message.esp_message_id,
            to=CONTACT_EMAIL,
            signed_at=int(AT.timestamp()) - signed_seconds_ago,
        )
        # when
        response = post(client, hook)
    # then
    assert response.status_code == status
    contact.refresh_from_db()
    bounced = contact.email_consent == ConsentStatus.BOUNCED
    assert bounced is (status == 200)
    if status == 400:
        assert "seconds old" in response.content.decode()


def test_a_captured_mailgun_webhook_replayed_later_is_refused(
    client, contact, sent_message
):
    # given a delivered event accepted now, whose body someone captured
    message = sent_message("mailgun")
    with clock.frozen(AT):
        hook = hook_for("mailgun", "delivered", message)
        assert post(client, hook).status_code == 200
        # and the ESP-event log that dedupes it has since been purged
        EspEvent.objects.all().delete()
        # when it is posted again ten minutes later
        clock.advance(dt.timedelta(minutes=10))
        response = post(client, hook)
    # then
    assert response.status_code == 400
    assert not EspEvent.objects.exists()


def test_a_legacy_form_encoded_mailgun_webhook_with_an_old_signature_is_refused(
    client, contact, sent_message
):
    # given Mailgun's legacy webhook (form fields), signed an hour ago
    message = sent_message("mailgun")
    with clock.frozen(AT):
        signed = json.loads(
            mailgun(
                "bounced",
                message_id=message.pk,
                esp_id=message.esp_message_id,
                to=CONTACT_EMAIL,
                signed_at=int(AT.timestamp()) - 3600,
            ).body
        )["signature"]
        fields = {
            **signed,
            "event": "bounced",
            "recipient": CONTACT_EMAIL,
            "Message-Id": message.esp_message_id,
            "code": "550",
        }
        # when
        response = client.post(
            "/webhooks/anymail/mailgun/tracking/",
            data=fields,
            headers={"Authorization": basic_auth(WEBHOOK_SECRET)},
        )
    # then
    assert response.status_code == 400
    assert_nothing_changed(message, contact)
