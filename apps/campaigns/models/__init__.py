"""Email: templates and layouts, topics, messages (email.py) and broadcast
campaigns (broadcast.py)."""

from .broadcast import (
    Campaign,
    CampaignRecipient,
    CampaignVariant,
    SendingLane,
)
from .email import (
    DELIVERY_RANK,
    EmailLayout,
    EmailTemplate,
    EspEvent,
    Message,
    Topic,
    TopicSubscription,
)

__all__ = [
    "DELIVERY_RANK",
    "Campaign",
    "CampaignRecipient",
    "CampaignVariant",
    "EmailLayout",
    "EmailTemplate",
    "EspEvent",
    "Message",
    "SendingLane",
    "Topic",
    "TopicSubscription",
]
