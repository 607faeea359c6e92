"""ESP tracking webhooks, end to end.

Each ESP's documented sample payload is posted through the test client to the real
anymail webhook view at /webhooks/anymail/<esp>/tracking/, with the credentials the
ESP would send, and must land as one Nudge Event on the contact, a Message.delivery
that only moves up, and a consent change where one is due.

The payloads follow each ESP's published samples (the page is named above each one),
as django-anymail's own tests (tests/test_<esp>_webhooks.py) copy them; only the
addresses, ids and our metadata (``nudge_message_id``, set on every send by
apps/campaigns/delivery.py) are ours, echoed back where each ESP echoes custom data:

- SendGrid: custom_args become top-level keys of each event (anymail adds its own
  ``anymail_id`` custom arg and reads it back as the message id);
- Mailgun: ``event-data.user-variables``;
- Postmark: ``Metadata``;
- Amazon SES: not ``mail.tags`` (anymail ignores SES message tags) but the
  ``X-Metadata`` header anymail's SES backend adds, echoed in ``mail.headers``;
- Brevo: the ``X-Mailin-custom`` header, echoed as a JSON string field.

Amazon SES arrives as an SNS Notification. anymail 15 does not verify SNS signatures
(see validate_request in anymail/webhooks/amazon_ses.py: "Future: Verify SNS message
signature"): it checks Basic auth and that the x-amz-sns-* headers match the body, so
the Signature fields below are the documentation's placeholders and nothing is
mocked. Its view does need boto3 at construction (for SNS subscription
auto-confirmation), which is not installed with Nudge: see AMAZON_SES below.
"""

import base64
import hashlib
import hmac
import json
import uuid
from typing import NamedTuple

import pytest

from apps.campaigns.models import EmailTemplate, EspEvent, Message
from apps.contacts.models import ConsentStatus, Contact
from apps.core import clock
from apps.events.models import Event

WEBHOOK_SECRET = "nudge-esp:k7Qx2mVr9tLp4wZs"
MAILGUN_SIGNING_KEY = "mailgun-test-signing-key-5f2c8e1a"
CONTACT_EMAIL = "ada@example.com"
MARKETER_EMAIL = "marketer@example.com"
CLICK_URL = "https://shop.example.com/cart?utm_source=nudge"

AMAZON_SES = "amazon_ses"
ESPS = ["sendgrid", "mailgun", "postmark", AMAZON_SES, "brevo"]
# Amazon SES event publishing has no unsubscribe event anymail understands.
ESPS_WITH_UNSUBSCRIBE = ["sendgrid", "mailgun", "postmark", "brevo"]

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

pytestmark = [
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


def _metadata(message_id: int | None) -> dict:
    return {} if message_id is None else {"nudge_message_id": str(message_id)}


# -- SendGrid --------------------------------------------------------------------------
# Twilio SendGrid docs, "Event Webhook Reference"
# (docs/sendgrid/for-developers/tracking-events/event): a JSON array of event
# objects; each sample below is the one shown there for that event type, with our
# custom_args (anymail_id, nudge_message_id) as top-level keys.

SENDGRID_SAMPLES = {
    # "Delivery events: delivered"
    "delivered": {
        "event": "delivered",
        "response": "250 OK",
        "ip": "168.1.1.1",
        "tls": 1,
    },
    # "Delivery events: bounce" (type "bounce" = permanent; "blocked" = soft)
    "bounced": {
        "event": "bounce",
        "bounce_classification": "Invalid Address",
        "reason": "500 unknown recipient",
        "status": "5.0.0",
        "type": "bounce",
        "ip": "168.1.1.1",
        "tls": 1,
    },
    # "Engagement events: open"
    "opened": {
        "event": "open",
        "sg_machine_open": False,
        "useragent": "Mozilla/4.0 (compatible; MSIE 6.1; Windows XP; "
        ".NET CLR 1.1.4322)",
        "ip": "255.255.255.255",
    },
    # "Engagement events: click"
    "clicked": {
        "event": "click",
        "url": CLICK_URL,
        "url_offset": {"index": 0, "type": "html"},
        "useragent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_4) "
        "AppleWebKit/537.36",
        "ip": "255.255.255.255",
    },
    # "Engagement events: spamreport"
    "complained": {"event": "spamreport"},
    # "Engagement events: unsubscribe"
    "unsubscribed": {"event": "unsubscribe"},
}


def sendgrid(kind: str, *, message_id: int | None, esp_id: str, to: str) -> Hook:
    event = {
        "email": to,
        "timestamp": 1513299569,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "category": ["welcome"],
        "sg_event_id": uuid.uuid4().hex[:22],
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        **SENDGRID_SAMPLES[kind],
        "anymail_id": esp_id,
        **_metadata(message_id),
    }
    return Hook("/webhooks/anymail/sendgrid/tracking/", json.dumps([event]))


# -- Mailgun ---------------------------------------------------------------------------
# Mailgun docs, User Manual > Webhooks: a JSON body {"signature": {...}, "event-data":
# {...}}, where signature = HMAC-SHA256(webhook signing key, timestamp + token), hex
# ("Securing Webhooks"); event-data as in User Manual > Events, "Event Structure"
# samples for delivered / failed / opened / clicked / complained / unsubscribed.

MAILGUN_SAMPLES = {
    # Events: "Delivered"
    "delivered": {
        "event": "delivered",
        "log-level": "info",
        "envelope": {
            "transport": "smtp",
            "sender": "bob@mg.example.com",
            "sending-ip": "209.61.154.250",
            "targets": CONTACT_EMAIL,
        },
        "flags": {
            "is-routed": False,
            "is-authenticated": True,
            "is-system-test": False,
            "is-test-mode": False,
        },
        "delivery-status": {
            "tls": True,
            "mx-host": "smtp-in.example.com",
            "attempt-no": 1,
            "description": "",
            "session-seconds": 0.4331989288330078,
            "utf8": True,
            "code": 250,
            "message": "OK",
            "certificate-verified": True,
        },
    },
    # Events: "Failed (permanent)"
    "bounced": {
        "event": "failed",
        "log-level": "error",
        "severity": "permanent",
        "reason": "bounce",
        "delivery-status": {
            "tls": True,
            "mx-host": "smtp-in.example.com",
            "attempt-no": 1,
            "description": "",
            "session-seconds": 2.952177047729492,
            "utf8": True,
            "code": 550,
            "message": "5.1.1 The email account that you tried to reach does not "
            "exist.",
            "certificate-verified": True,
        },
    },
    # Events: "Failed (temporary)"
    "deferred": {
        "event": "failed",
        "log-level": "warn",
        "severity": "temporary",
        "reason": "generic",
        "delivery-status": {
            "attempt-no": 1,
            "description": "No MX for example.com",
            "session-seconds": 0.0,
            "retry-seconds": 600,
            "code": 498,
            "message": "No MX for example.com",
        },
    },
    # Events: "Opened"
    "opened": {
        "event": "opened",
        "log-level": "info",
        "ip": "50.56.129.169",
        "geolocation": {"country": "US", "region": "CA", "city": "San Francisco"},
        "client-info": {
            "client-type": "browser",
            "client-os": "OS X",
            "device-type": "desktop",
            "client-name": "Chrome",
            "user-agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_13_6)",
        },
    },
    # Events: "Clicked"
    "clicked": {
        "event": "clicked",
        "log-level": "info",
        "url": CLICK_URL,
        "ip": "50.56.129.169",
        "geolocation": {"country": "US", "region": "CA", "city": "San Francisco"},
        "client-info": {
            "client-type": "browser",
            "client-os": "OS X",
            "device-type": "desktop",
            "client-name": "Chrome",
            "user-agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_13_6)",
        },
    },
    # Events: "Complained"
    "complained": {"event": "complained", "log-level": "warn"},
    # Events: "Unsubscribed"
    "unsubscribed": {
        "event": "unsubscribed",
        "log-level": "info",
        "ip": "50.56.129.169",
    },
}


def mailgun_signature(timestamp: str, token: str, key: str = MAILGUN_SIGNING_KEY):
    return hmac.new(
        key.encode("ascii"), f"{timestamp}{token}".encode("ascii"), hashlib.sha256
    ).hexdigest()


def mailgun(
    kind: str,
    *,
    message_id: int | None,
    esp_id: str,
    to: str,
    token: str | None = None,
    signing_key: str = MAILGUN_SIGNING_KEY,
) -> Hook:
    timestamp = 1529006854.329574
    # Mailgun's token: 50 random hex characters, new for every webhook post.
    token = token or (uuid.uuid4().hex + uuid.uuid4().hex)[:50]
    event_data = {
        **MAILGUN_SAMPLES[kind],
        "id": uuid.uuid4().hex[:22],
        "timestamp": timestamp,
        "recipient": to,
        "recipient-domain": to.split("@")[1],
        "message": {
            "headers": {
                "to": to,
                # Mailgun sends it without the angle brackets anymail adds back.
                "message-id": esp_id.strip("<>"),
                "from": "Nudge Shop <shop@mg.example.com>",
                "subject": "Welcome",
            },
            "attachments": [],
            "size": 111,
        },
        "campaigns": [],
        "tags": ["welcome"],
        "user-variables": _metadata(message_id),
    }
    signed_at = str(int(timestamp))
    body = {
        "signature": {
            "timestamp": signed_at,
            "token": token,
            "signature": mailgun_signature(signed_at, token, signing_key),
        },
        "event-data": event_data,
    }
    return Hook("/webhooks/anymail/mailgun/tracking/", json.dumps(body))


# -- Postmark --------------------------------------------------------------------------
# Postmark developer docs, Webhooks: one JSON object per post, "RecordType" naming it.

POSTMARK_CLIENT = {
    "Client": {"Name": "Chrome 35.0.1916.153", "Company": "Google", "Family": "Chrome"},
    "OS": {
        "Name": "OS X 10.7 Lion",
        "Company": "Apple Computer, Inc.",
        "Family": "OS X",
    },
    "UserAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_7_5) AppleWebKit/537.36",
    "Geo": {"CountryISOCode": "RS", "Country": "Serbia", "City": "Novi Sad"},
}


def postmark(kind: str, *, message_id: int | None, esp_id: str, to: str) -> Hook:
    common = {
        "MessageStream": "outbound",
        "ServerID": 23,
        "MessageID": esp_id,
        "Tag": "welcome",
        "Metadata": _metadata(message_id),
    }
    bounce_id = uuid.uuid4().int % 10**15  # Postmark's bounce ID, a 64-bit integer
    samples = {
        # "Delivery webhook"
        "delivered": {
            "RecordType": "Delivery",
            "Recipient": to,
            "DeliveredAt": "2019-11-05T16:33:54.9070259Z",
            "Details": "Test delivery webhook details",
        },
        # "Bounce webhook" (Type HardBounce)
        "bounced": {
            "RecordType": "Bounce",
            "ID": bounce_id,
            "Type": "HardBounce",
            "TypeCode": 1,
            "Name": "Hard bounce",
            "Description": "The server was unable to deliver your message (ex: unknown "
            "user, mailbox not found).",
            "Details": "smtp;550 5.1.1 The email account that you tried to reach does "
            "not exist.",
            "Email": to,
            "From": "shop@example.com",
            "BouncedAt": "2019-11-05T16:35:54.9070259Z",
            "DumpAvailable": True,
            "Inactive": True,
            "CanActivate": True,
            "Subject": "Welcome",
        },
        # "Bounce webhook" with a Type from "Bounce types": SoftBounce (TypeCode 4096)
        "soft_bounced": {
            "RecordType": "Bounce",
            "ID": bounce_id,
            "Type": "SoftBounce",
            "TypeCode": 4096,
            "Name": "Soft bounce/Undeliverable",
            "Description": "Unable to temporarily deliver this email.",
            "Details": "smtp;452 4.2.2 The email account that you tried to reach is "
            "over quota.",
            "Email": to,
            "From": "shop@example.com",
            "BouncedAt": "2019-11-05T16:35:54.9070259Z",
            "DumpAvailable": True,
            "Inactive": False,
            "CanActivate": False,
            "Subject": "Welcome",
        },
        # "Open tracking webhook"
        "opened": {
            "RecordType": "Open",
            "FirstOpen": True,
            **POSTMARK_CLIENT,
            "Platform": "WebMail",
            "ReadSeconds": 5,
            "ReceivedAt": "2019-11-05T16:40:54.9070259Z",
            "Recipient": to,
        },
        # "Click webhook"
        "clicked": {
            "RecordType": "Click",
            "ClickLocation": "HTML",
            **POSTMARK_CLIENT,
            "Platform": "Desktop",
            "OriginalLink": CLICK_URL,
            "ReceivedAt": "2019-11-05T16:41:54.9070259Z",
            "Recipient": to,
        },
        # "Spam complaint webhook"
        "complained": {
            "RecordType": "SpamComplaint",
            "ID": bounce_id,
            "Type": "SpamComplaint",
            "TypeCode": 512,
            "Name": "Spam complaint",
            "Description": "",
            "Details": "Test spam complaint details",
            "Email": to,
            "From": "shop@example.com",
            "BouncedAt": "2019-11-05T16:45:54.9070259Z",
            "DumpAvailable": True,
            "Inactive": True,
            "CanActivate": False,
            "Subject": "Welcome",
        },
        # "Subscription change webhook" (the recipient used Postmark's unsubscribe
        # link: Origin "Recipient", SuppressionReason "ManualSuppression")
        "unsubscribed": {
            "RecordType": "SubscriptionChange",
            "ChangedAt": "2019-11-05T16:50:54Z",
            "Recipient": to,
            "Origin": "Recipient",
            "SuppressSending": True,
            "SuppressionReason": "ManualSuppression",
        },
    }
    body = {**samples[kind], **common}
    return Hook("/webhooks/anymail/postmark/tracking/", json.dumps(body))


# -- Amazon SES ------------------------------------------------------------------------
# AWS docs: SES Developer Guide, "Examples of event data that Amazon SES publishes to
# Amazon SNS" (event-publishing-retrieving-sns-examples) for the SES event; SNS
# Developer Guide, "HTTP/HTTPS notification JSON format" and "HTTP/HTTPS headers" for
# the envelope SNS posts (JSON as text/plain, x-amz-sns-* headers).

SES_TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"
SES_USER_AGENT = "Mozilla/5.0 (iPhone; CPU iPhone OS 10_3_3 like Mac OS X)"


def amazon_ses(kind: str, *, message_id: int | None, esp_id: str, to: str) -> Hook:
    headers = [
        {"name": "From", "value": "shop@example.com"},
        {"name": "To", "value": to},
        {"name": "Subject", "value": "Welcome"},
        {"name": "MIME-Version", "value": "1.0"},
        {"name": "Content-Type", "value": "multipart/alternative"},
        # anymail's SES backend sends tags and metadata as these two headers
        {"name": "X-Tag", "value": "welcome"},
    ]
    if message_id is not None:
        headers.append(
            {"name": "X-Metadata", "value": json.dumps(_metadata(message_id))}
        )
    mail = {
        "timestamp": "2016-10-19T23:20:52.240Z",
        "source": "shop@example.com",
        "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/shop@example.com",
        "sendingAccountId": "123456789012",
        "messageId": esp_id,
        "destination": [to],
        "headersTruncated": False,
        "headers": headers,
        "commonHeaders": {
            "from": ["shop@example.com"],
            "to": [to],
            "messageId": esp_id,
            "subject": "Welcome",
        },
        "tags": {
            "ses:configuration-set": ["nudge"],
            "ses:source-ip": ["192.0.2.0"],
            "ses:from-domain": ["example.com"],
            "ses:caller-identity": ["nudge"],
        },
    }
    feedback_id = f"01000157c44f053b-{uuid.uuid4()}-000000"
    samples = {
        # "Delivery record"
        "delivered": {
            "eventType": "Delivery",
            "delivery": {
                "timestamp": "2016-10-19T23:21:04.133Z",
                "processingTimeMillis": 11893,
                "recipients": [to],
                "smtpResponse": "250 2.6.0 Message received",
                "reportingMTA": "mta.example.com",
            },
        },
        # "Bounce record" (bounceType Permanent)
        "bounced": {
            "eventType": "Bounce",
            "bounce": {
                "bounceType": "Permanent",
                "bounceSubType": "General",
                "bouncedRecipients": [
                    {
                        "emailAddress": to,
                        "action": "failed",
                        "status": "5.1.1",
                        "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                    }
                ],
                "timestamp": "2017-08-05T00:41:02.669Z",
                "feedbackId": feedback_id,
                "reportingMTA": "dsn; mta.example.com",
            },
        },
        # "Bounce record" with bounceType Transient (see "Bounce types": MailboxFull)
        "soft_bounced": {
            "eventType": "Bounce",
            "bounce": {
                "bounceType": "Transient",
                "bounceSubType": "MailboxFull",
                "bouncedRecipients": [
                    {
                        "emailAddress": to,
                        "action": "failed",
                        "status": "4.2.2",
                        "diagnosticCode": "smtp; 452 4.2.2 mailbox full",
                    }
                ],
                "timestamp": "2017-08-05T00:41:02.669Z",
                "feedbackId": feedback_id,
                "reportingMTA": "dsn; mta.example.com",
            },
        },
        # "Complaint record"
        "complained": {
            "eventType": "Complaint",
            "complaint": {
                "complainedRecipients": [{"emailAddress": to}],
                "timestamp": "2017-08-05T00:41:02.669Z",
                "feedbackId": feedback_id,
                "userAgent": SES_USER_AGENT,
                "complaintFeedbackType": "abuse",
                "arrivalDate": "2017-08-05T00:41:02.669Z",
            },
        },
        # "Open record"
        "opened": {
            "eventType": "Open",
            "open": {
                "ipAddress": "192.0.2.1",
                "timestamp": "2017-08-09T22:00:19.652Z",
                "userAgent": SES_USER_AGENT,
            },
        },
        # "Click record"
        "clicked": {
            "eventType": "Click",
            "click": {
                "ipAddress": "192.0.2.1",
                "link": CLICK_URL,
                "linkTags": {"samplekey0": ["samplevalue0"]},
                "timestamp": "2017-08-09T23:51:25.570Z",
                "userAgent": SES_USER_AGENT,
            },
        },
    }
    ses_event = {**samples[kind], "mail": mail}
    sns_message_id = str(uuid.uuid4())
    notification = {
        "Type": "Notification",
        "MessageId": sns_message_id,
        "TopicArn": SES_TOPIC,
        "Subject": "Amazon SES Email Event Notification",
        "Message": json.dumps(ses_event),
        "Timestamp": "2017-08-09T23:51:26.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4Vbe"
        "S0QHVCkhRS7",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/"
        "SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"
        f"&SubscriptionArn={SES_TOPIC}:c9135db0-26c4-47ec-8998-413945fb5a96",
    }
    return Hook(
        "/webhooks/anymail/amazon_ses/tracking/",
        json.dumps(notification),
        content_type="text/plain; charset=UTF-8",
        headers={
            "x-amz-sns-message-type": "Notification",
            "x-amz-sns-message-id": sns_message_id,
            "x-amz-sns-topic-arn": SES_TOPIC,
            "x-amz-sns-subscription-arn": f"{SES_TOPIC}:c9135db0-26c4-47ec-8998",
            "User-Agent": "Amazon Simple Notification Service Agent",
        },
    )


# -- Brevo -----------------------------------------------------------------------------
# Brevo developer docs, "Transactional webhooks" (docs/transactional-webhooks): one
# JSON object per post; the event names are those anymail maps (Brevo's page shows
# "Unsubscribed" under the event name "unsubscribe").

BREVO_SAMPLES = {
    # "Delivered"
    "delivered": {"event": "delivered"},
    # "Hard bounce"
    "bounced": {"event": "hard_bounce", "reason": "550 5.1.1 user unknown"},
    # "Soft bounce"
    "soft_bounced": {"event": "soft_bounce", "reason": "452 4.2.2 mailbox full"},
    # "First opening"
    "opened": {"event": "unique_opened"},
    # "Clicked"
    "clicked": {"event": "click", "link": CLICK_URL},
    # "Marked as spam"
    "complained": {"event": "spam"},
    # "Unsubscribed"
    "unsubscribed": {"event": "unsubscribe"},
}


def brevo(kind: str, *, message_id: int | None, esp_id: str, to: str) -> Hook:
    event = {
        **BREVO_SAMPLES[kind],
        "email": to,
        "id": 26224,  # the webhook's id, not the event's: Brevo gives no event id
        "date": "2024-04-01 13:58:23",
        "ts": 1711979903,
        "message-id": esp_id,
        "ts_event": 1711979903,
        "subject": "Welcome",
        "sending_ip": "185.41.28.109",
        "ts_epoch": 1711979903123,
        "template_id": 22,
        "tags": ["welcome"],
    }
    if message_id is not None:
        event["X-Mailin-custom"] = json.dumps(_metadata(message_id))
    return Hook("/webhooks/anymail/brevo/tracking/", json.dumps(event))


BUILDERS = {
    "sendgrid": sendgrid,
    "mailgun": mailgun,
    "postmark": postmark,
    "amazon_ses": amazon_ses,
    "brevo": brevo,
}


# -- helpers and fixtures --------------------------------------------------------------


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
