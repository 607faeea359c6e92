"""The plain data a template renders with. No model instances ever reach Liquid."""

import datetime as dt
import functools
from typing import Any

from django.conf import settings
from django.urls import get_script_prefix, get_urlconf, reverse

from apps.contacts.models import ConsentStatus, Contact
from apps.core import clock
from apps.events.models import Event

from .models import Topic
from .tokens import CONFIRM_SALT, UNSUBSCRIBE_SALT, VIEW_SALT, make_contact_token

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


# Stands in for the token while a link's path is reversed once (see signed_url).
_PLACEHOLDER = "nudge-token-placeholder"


def signed_url(name: str, token: str) -> str:
    """The absolute URL of view ``name`` for ``token``, as SITE_URL + reverse()
    gives it. A broadcast email has a dozen such links and reverse() walks the
    URLconf for each: it runs once per view (and URLconf), the token goes in the
    placeholder's place. Tokens are signing's URL-safe characters, which reverse()
    leaves as they are."""
    prefix, suffix = _url_around_token(
        name, get_urlconf() or settings.ROOT_URLCONF, get_script_prefix()
    )
    return settings.SITE_URL + prefix + token + suffix


@functools.lru_cache(maxsize=64)
def _url_around_token(name: str, urlconf: str, script_prefix: str) -> tuple[str, str]:
    path = reverse(name, args=[_PLACEHOLDER], urlconf=urlconf)
    prefix, found, suffix = path.partition(_PLACEHOLDER)
    if not found:
        raise ValueError(f"{name}'s URL does not carry its token as it was given")
    return prefix, suffix


def uses_recent_events(*sources: str) -> bool:
    """Whether any of these template sources names ``recent_events``: a template
    reads a variable by writing its name. (One that builds the name at render time,
    ``{{ [name] }}``, would find them empty: no email needs that.)"""
    return any("recent_events" in source for source in sources if source)


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
    return {
        "unsubscribe_url": signed_url("campaigns:unsubscribe", leave_topic),
        "unsubscribe_all_url": signed_url("campaigns:unsubscribe", unsubscribe),
        "preferences_url": signed_url("campaigns:preferences", unsubscribe),
        "view_in_browser_url": signed_url("campaigns:view", view),
    }


def build_context(
    *,
    contact: Contact,
    message_id: int | None,
    extra: dict[str, Any] | None = None,
    is_test: bool = False,
    topic: Topic | None = None,
    with_recent_events: bool = True,
) -> dict[str, Any]:
    """Everything a template may use: contact, event, recent_events, workflow, links.
    ``with_recent_events``: False when the template never names them (a query per
    email saved; see uses_recent_events)."""
    extra = extra or {}
    now = clock.now()
    context: dict[str, Any] = {
        "contact": contact_data(contact),
        "event": extra.get("event") or {},
        "workflow": extra.get("workflow") or {},
        "recent_events": recent_events(contact, now=now) if with_recent_events else {},
        "now": now.isoformat(),
        "company": {
            "address": settings.NUDGE_POSTAL_ADDRESS,
            "name": settings.NUDGE_COMPANY_NAME,
        },
        # What the email is about: layouts say "Unsubscribe from {{ topic.name }}".
        "topic": {"name": topic.name, "slug": topic.slug} if topic else {},
    }
    # Double opt-in's link, in the email that asks a pending contact to confirm.
    context["confirm_url"] = ""
    if contact.pk is not None and contact.email_consent == ConsentStatus.PENDING:
        context["confirm_url"] = signed_url(
            "campaigns:confirm",
            make_contact_token(
                contact_id=contact.pk,
                message_id=message_id,
                salt=CONFIRM_SALT,
                is_test=is_test,
            ),
        )
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
