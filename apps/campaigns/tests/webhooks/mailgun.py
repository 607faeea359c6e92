"""Mailgun's tracking webhooks as it posts them (sources: __init__.py)."""

import hashlib
import hmac
import json
import uuid

from apps.core import clock

from .common import CLICK_URL, CONTACT_EMAIL, MAILGUN_SIGNING_KEY, Hook, nudge_metadata

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
    signed_at: int | None = None,
) -> Hook:
    timestamp = 1529006854.329574  # when the event happened, as Mailgun's samples
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
        "user-variables": nudge_metadata(message_id),
    }
    # Mailgun signs when it posts: a signature is only good for a few minutes.
    signed_at = str(int(clock.now().timestamp()) if signed_at is None else signed_at)
    body = {
        "signature": {
            "timestamp": signed_at,
            "token": token,
            "signature": mailgun_signature(signed_at, token, signing_key),
        },
        "event-data": event_data,
    }
    return Hook("/webhooks/anymail/mailgun/tracking/", json.dumps(body))
