"""The plain data a template renders with. No model instances ever reach Liquid."""

import datetime as dt
from typing import Any

from django.conf import settings
from django.urls import reverse

from apps.contacts.models import Contact
from apps.core import clock
from apps.events.models import Event

from .models import Topic
from .tokens import UNSUBSCRIBE_SALT, VIEW_SALT, make_contact_token

# "Recently viewed" blocks look back this far, at most this many events.
RECENT_EVENTS_DAYS = 30
RECENT_EVENTS_LIMIT = 200


def contact_data(contact: Contact) -> dict[str, Any]:
    attributes = dict(contact.attributes or {})
    builtin = {
        "id": contact.pk,
        "email": contact.email or "",
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "full_name": contact.full_name,
        "phone": contact.phone,
        "timezone": contact.timezone or "UTC",
        "locale": contact.locale,
        "score": contact.score,
        "user_id": contact.external_id or "",
        "attributes": attributes,
    }
    # Traits are reachable as contact.plan as well as contact.attributes.plan.
    return {**attributes, **builtin}


def recent_events(contact: Contact, *, now: dt.datetime) -> dict[str, list[dict]]:
    if contact.pk is None:
        return {}
    rows = (
        Event.objects.filter(
            contact=contact, timestamp__gte=now - dt.timedelta(days=RECENT_EVENTS_DAYS)
        )
        .order_by("-timestamp")
        .values("name", "properties", "timestamp")[:RECENT_EVENTS_LIMIT]
    )
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        properties = row["properties"] if isinstance(row["properties"], dict) else {}
        grouped.setdefault(row["name"], []).append(
            {
                **properties,
                "properties": properties,
                "timestamp": row["timestamp"].isoformat(),
            }
        )
    return grouped


def link_urls(
    *,
    contact_id: int,
    message_id: int | None,
    is_test: bool = False,
    topic_id: int | None = None,
) -> dict[str, str]:
    """The signed links of an email. A test's (and a preview's) say so: clicking
    "unsubscribe" in a test personalised as a real contact unsubscribes nobody.
    With a topic, ``unsubscribe_url`` (the footer's and List-Unsubscribe's) leaves
    that topic only; ``unsubscribe_all_url`` always leaves all marketing email."""
    unsubscribe = make_contact_token(
        contact_id=contact_id,
        message_id=message_id,
        salt=UNSUBSCRIBE_SALT,
        is_test=is_test,
    )
    leave_topic = unsubscribe
    if topic_id is not None:
        leave_topic = make_contact_token(
            contact_id=contact_id,
            message_id=message_id,
            salt=UNSUBSCRIBE_SALT,
            is_test=is_test,
            topic_id=topic_id,
        )
    view = make_contact_token(
        contact_id=contact_id, message_id=message_id, salt=VIEW_SALT, is_test=is_test
    )
    base = settings.SITE_URL
    return {
        "unsubscribe_url": base + reverse("campaigns:unsubscribe", args=[leave_topic]),
        "unsubscribe_all_url": base
        + reverse("campaigns:unsubscribe", args=[unsubscribe]),
        "preferences_url": base + reverse("campaigns:preferences", args=[unsubscribe]),
        "view_in_browser_url": base + reverse("campaigns:view", args=[view]),
    }


def build_context(
    *,
    contact: Contact,
    message_id: int | None,
    extra: dict[str, Any] | None = None,
    is_test: bool = False,
    topic: Topic | None = None,
) -> dict[str, Any]:
    """Everything a template may use: contact, event, recent_events, workflow, links."""
    extra = extra or {}
    now = clock.now()
    context: dict[str, Any] = {
        "contact": contact_data(contact),
        "event": extra.get("event") or {},
        "workflow": extra.get("workflow") or {},
        "recent_events": recent_events(contact, now=now),
        "now": now.isoformat(),
        "company": {
            "address": settings.NUDGE_POSTAL_ADDRESS,
            "name": settings.NUDGE_COMPANY_NAME,
        },
        # What the email is about: layouts say "Unsubscribe from {{ topic.name }}".
        "topic": {"name": topic.name, "slug": topic.slug} if topic else {},
    }
    if contact.pk is not None:
        context.update(
            link_urls(
                contact_id=contact.pk,
                message_id=message_id,
                is_test=is_test,
                topic_id=topic.pk if topic else None,
            )
        )
    else:
        context.update(
            unsubscribe_url="#",
            unsubscribe_all_url="#",
            preferences_url="#",
            view_in_browser_url="#",
        )
    return context
