"""SendGrid's tracking webhooks as it posts them (sources: __init__.py)."""

import json
import uuid

from .common import CLICK_URL, Hook, nudge_metadata

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
        **nudge_metadata(message_id),
    }
    return Hook("/webhooks/anymail/sendgrid/tracking/", json.dumps([event]))
