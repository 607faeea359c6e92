"""What every ESP's webhooks share: the credentials, the addresses, the ids each
ESP echoes, and the request a webhook is."""

from typing import NamedTuple

import pytest

WEBHOOK_SECRET = "nudge-esp:k7Qx2mVr9tLp4wZs"
MAILGUN_SIGNING_KEY = "mailgun-test-signing-key-5f2c8e1a"
CONTACT_EMAIL = "ada@example.com"
MARKETER_EMAIL = "marketer@example.com"
CLICK_URL = "https://shop.example.com/cart?utm_source=nudge"

AMAZON_SES = "amazon_ses"
ESPS = ["sendgrid", "mailgun", "postmark", AMAZON_SES, "brevo"]
# Every ESP reports unsubscribes (anymail reports SES's "Subscription" records and
# Brevo's documented "unsubscribed" as "unknown"; Nudge reads the raw event).
ESPS_WITH_UNSUBSCRIBE = ["sendgrid", "mailgun", "postmark", AMAZON_SES, "brevo"]

# The message id each ESP returns from its send API (anymail_status.message_id, kept
# in Message.esp_message_id) and echoes in its webhooks.
ESP_MESSAGE_IDS = {
    "sendgrid": "3c2f4df8-c6dd-4cd2-9b91-6582b81a0349",  # anymail_id custom arg
    "mailgun": "<20180812211713.1.DF5966851B4BAA99@mg.example.com>",
    "postmark": "883953f4-6105-42a2-a16a-77a8eac79483",
    "amazon_ses": "010001627e4c3c4b-5f3c6a91-8a5e-4d3b-9c2e-3f6f0a1b2c3d-000000",
    "brevo": "<202404011158.9876543210@smtp-relay.mailin.fr>",
}
UNKNOWN_ESP_MESSAGE_IDS = {
    "sendgrid": "9b1d2e3f-0000-4000-8000-00000000dead",
    "mailgun": "<20180812211713.1.000000000000DEAD@mg.example.com>",
    "postmark": "00000000-0000-4000-8000-00000000dead",
    "amazon_ses": "010001627e4c3c4b-00000000-0000-4000-8000-00000000dead-000000",
    "brevo": "<202404011158.0000000000@smtp-relay.mailin.fr>",
}
# esp_name as anymail reports it (and Nudge stores in EspEvent.esp / properties.esp)
ESP_NAMES = {
    "sendgrid": "SendGrid",
    "mailgun": "Mailgun",
    "postmark": "Postmark",
    "amazon_ses": "Amazon SES",
    "brevo": "Brevo",
}


# What every webhook test module is marked with.
MARKS = [
    pytest.mark.django_db,
    # anymail 15 still ships the SendGrid webhook but warns it is unsupported.
    pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailNotSupportedWarning"),
]


class Hook(NamedTuple):
    """One webhook request as the ESP sends it."""

    path: str
    body: str
    content_type: str = "application/json"
    headers: dict = {}


def nudge_metadata(message_id: int | None) -> dict:
    return {} if message_id is None else {"nudge_message_id": str(message_id)}
