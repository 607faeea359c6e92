"""Postmark's tracking webhooks as it posts them (sources: __init__.py)."""

import json
import uuid

from .common import CLICK_URL, Hook, nudge_metadata

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
        "Metadata": nudge_metadata(message_id),
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
