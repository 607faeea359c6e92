"""Brevo's tracking webhooks as it posts them (sources: __init__.py)."""

import json

from .common import CLICK_URL, Hook, nudge_metadata

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
    # "Unsubscribed" as Brevo's webhook reference spells the event today; anymail
    # maps only "unsubscribe" and reports this one as "unknown"
    "unsubscribed_documented": {"event": "unsubscribed"},
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
        event["X-Mailin-custom"] = json.dumps(nudge_metadata(message_id))
    return Hook("/webhooks/anymail/brevo/tracking/", json.dumps(event))
