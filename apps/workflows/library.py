"""Workflows to start from: the flows every shop needs, as drafts to adjust."""

from django.db import transaction

from apps.campaigns.models import EmailTemplate

from .models import Workflow
from .services import workflow_create


def _email(subject: str, body: str) -> dict:
    return {"subject": subject, "html_body": body}


LIBRARY: dict[str, dict] = {
    "cart-abandonment": {
        "name": "Cart abandonment",
        "description": "Added to cart, no order within an hour: a reminder; a second a day later.",
        "templates": {
            "Cart reminder": _email(
                "{{ contact.first_name | default: 'Hi' }}, your cart is waiting",
                "<p>You left {{ event.properties.name | default: 'something' }} in your cart.</p>"
                '<p><a class="button" href="/cart">Back to your cart</a></p>',
            ),
            "Cart last call": _email(
                "Last call for your cart",
                "<p>Your cart is still saved, but not for long.</p>",
            ),
        },
        "definition": {
            "trigger": {"type": "event", "event": "add_to_cart", "key": "cart_id"},
            "reentry": {"rule": "while_not_enrolled"},
            "goal": {
                "event": "order_completed",
                "match_key": "cart_id",
                "within_days": 7,
            },
            "exit_condition": {"consent": ["unsubscribed", "bounced", "complained"]},
            "frequency_cap": {"max": 3, "hours": 24},
            "quiet_hours": {"start": "21:00", "end": "08:00", "mode": "defer"},
            "steps": [
                {
                    "key": "wait-order",
                    "type": "wait_for_event",
                    "config": {
                        "event": "order_completed",
                        "match_key": "cart_id",
                        "timeout": {"hours": 1},
                    },
                    "next": {"happened": "", "timed_out": "reminder"},
                },
                {
                    "key": "reminder",
                    "type": "send_email",
                    "config": {"template": "Cart reminder"},
                    "next": {"next": "wait-again"},
                },
                {
                    "key": "wait-again",
                    "type": "wait_for_event",
                    "config": {
                        "event": "order_completed",
                        "match_key": "cart_id",
                        "timeout": {"days": 1},
                    },
                    "next": {"happened": "", "timed_out": "last-call"},
                },
                {
                    "key": "last-call",
                    "type": "send_email",
                    "config": {"template": "Cart last call"},
                },
            ],
        },
    },
    "browse-abandonment": {
        "name": "Browse abandonment",
        "description": "Viewed products three times in a day without adding to cart.",
        "templates": {
            "Still looking?": _email(
                "Still thinking about it?",
                "<ul>{% for item in recent_events.product_viewed limit: 3 %}"
                "<li>{{ item.name }} {{ item.price | money }}</li>{% endfor %}</ul>",
            ),
        },
        "definition": {
            "trigger": {"type": "event", "event": "product_viewed"},
            "entry_condition": {
                "all": [
                    {
                        "event": "product_viewed",
                        "count": {"op": "gte", "value": 3},
                        "window": {"last": 1, "unit": "days"},
                    },
                    {
                        "not": {
                            "event": "add_to_cart",
                            "window": {"last": 1, "unit": "days"},
                        }
                    },
                ]
            },
            "reentry": {"rule": "once_per_period", "days": 7},
            "steps": [
                {
                    "key": "pause",
                    "type": "wait",
                    "config": {"duration": {"hours": 2}},
                    "next": {"next": "check"},
                },
                {
                    "key": "check",
                    "type": "branch",
                    "config": {
                        "condition": {
                            "event": "add_to_cart",
                            "window": {"since": "enrollment"},
                        }
                    },
                    "next": {"yes": "", "no": "email"},
                },
                {
                    "key": "email",
                    "type": "send_email",
                    "config": {"template": "Still looking?"},
                },
            ],
        },
    },
    "welcome-series": {
        "name": "Welcome series",
        "description": "A welcome, then tips for readers or a nudge for the rest.",
        "templates": {
            "Welcome": _email(
                "Welcome, {{ contact.first_name | default: 'friend' }}!",
                "<p>Glad you are here.</p>",
            ),
            "Getting started tips": _email(
                "Three tips to get started",
                "<p>Here is how to get the most out of it.</p>",
            ),
            "Did you see this?": _email(
                "Did you see our welcome?", "<p>In case you missed it.</p>"
            ),
        },
        "definition": {
            "trigger": {"type": "event", "event": "signed_up"},
            "reentry": {"rule": "once"},
            "steps": [
                {
                    "key": "welcome",
                    "type": "send_email",
                    "config": {"template": "Welcome"},
                    "next": {"next": "wait"},
                },
                {
                    "key": "wait",
                    "type": "wait",
                    "config": {"duration": {"days": 2}},
                    "next": {"next": "opened"},
                },
                {
                    "key": "opened",
                    "type": "branch",
                    "config": {
                        "condition": {
                            "email": "opened",
                            "template": "Welcome",
                            "window": {"since": "enrollment"},
                        }
                    },
                    "next": {"yes": "tips", "no": "reminder"},
                },
                {
                    "key": "tips",
                    "type": "send_email",
                    "config": {"template": "Getting started tips"},
                },
                {
                    "key": "reminder",
                    "type": "send_email",
                    "config": {"template": "Did you see this?"},
                },
            ],
        },
    },
    "win-back": {
        "name": "Win-back",
        "description": "No activity for 30 days: we miss you, then an offer.",
        "templates": {
            "We miss you": _email(
                "We miss you, {{ contact.first_name | default: 'friend' }}",
                "<p>It has been a while.</p>",
            ),
            "An offer to come back": _email(
                "10% off to come back", "<p>Here is 10% off your next order.</p>"
            ),
        },
        "definition": {
            "trigger": {"type": "inactivity", "days": 30},
            "exit_condition": {"event": "page", "window": {"since": "enrollment"}},
            "steps": [
                {
                    "key": "miss-you",
                    "type": "send_email",
                    "config": {"template": "We miss you"},
                    "next": {"next": "wait"},
                },
                {
                    "key": "wait",
                    "type": "wait",
                    "config": {"duration": {"days": 7}},
                    "next": {"next": "offer"},
                },
                {
                    "key": "offer",
                    "type": "send_email",
                    "config": {"template": "An offer to come back"},
                },
            ],
        },
    },
    "birthday": {
        "name": "Birthday",
        "description": "On the contact's birthday, at 9:00 their time.",
        "templates": {
            "Happy birthday": _email(
                "Happy birthday, {{ contact.first_name | default: 'friend' }}!",
                "<p>A little gift inside.</p>",
            ),
        },
        "definition": {
            "trigger": {"type": "date", "attribute": "birthday"},
            "steps": [
                {
                    "key": "morning",
                    "type": "wait_until_time",
                    "config": {"time": "09:00"},
                    "next": {"next": "card"},
                },
                {
                    "key": "card",
                    "type": "send_email",
                    "config": {"template": "Happy birthday"},
                },
            ],
        },
    },
    "post-purchase": {
        "name": "Post-purchase follow-up",
        "description": "After an order: thank you, then ask for a review a week later.",
        "templates": {
            "Thank you for your order": _email(
                "Thank you for your order",
                "<p>Order {{ event.properties.order_id }} is on its way.</p>",
            ),
            "How was it?": _email(
                "How was your order?", "<p>Tell us what you think.</p>"
            ),
        },
        "definition": {
            "trigger": {"type": "event", "event": "order_completed", "key": "order_id"},
            "steps": [
                {
                    "key": "thanks",
                    "type": "send_email",
                    "config": {"template": "Thank you for your order"},
                    "next": {"next": "wait"},
                },
                {
                    "key": "wait",
                    "type": "wait",
                    "config": {"duration": {"days": 7}},
                    "next": {"next": "review"},
                },
                {
                    "key": "review",
                    "type": "send_email",
                    "config": {"template": "How was it?"},
                },
            ],
        },
    },
}


@transaction.atomic
def workflow_from_library(*, slug: str, user=None) -> Workflow:
    """Create a draft from a library entry, with starter templates where missing."""
    entry = LIBRARY[slug]
    for name, fields in entry["templates"].items():
        EmailTemplate.objects.get_or_create(name=name, defaults=fields)
    name, n = entry["name"], 2
    while Workflow.objects.filter(name=name).exists():
        name, n = f"{entry['name']} ({n})", n + 1
    return workflow_create(
        name=name,
        definition=entry["definition"],
        description=entry["description"],
        user=user,
    )
