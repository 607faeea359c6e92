"""Reads for segments: what the condition builder offers."""

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.db.models import Count

from apps.contacts.models import Contact
from apps.core import clock
from apps.events.models import Event

from .conditions.leaves import BUILTIN, EMAIL_ACTIONS
from .models import Segment

# How far back, and how many rows, the builder samples to list names and keys: enough
# to find what a site sends, cheap on a big events table.
RECENT_DAYS = 90
SAMPLE_EVENTS = 2_000
SAMPLE_CONTACTS = 2_000


# What higher apps add to the builder's vocabulary for the leaves they register
# (campaigns: its topics), by name: a function that reads it.
VOCABULARY_PARTS: dict[str, Callable[[], Any]] = {}


def register_vocabulary(name: str, read: Callable[[], Any]) -> None:
    VOCABULARY_PARTS[name] = read


def _keys(objects, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for data in objects:
        if not isinstance(data, dict):
            continue
        for key, value in data.items():
            if isinstance(value, dict):
                keys |= {f"{prefix}{key}.{k}" for k in _keys([value])}
            else:
                keys.add(f"{prefix}{key}")
    return keys


def vocabulary() -> dict:
    since = clock.now() - dt.timedelta(days=RECENT_DAYS)
    recent = Event.objects.filter(timestamp__gte=since)
    names = [
        row["name"]
        for row in recent.values("name").annotate(n=Count("pk")).order_by("-n")[:200]
    ]
    events = []
    for name in names:
        sample = (
            recent.filter(name=name)
            .order_by("-pk")
            .values_list("properties", flat=True)[:200]
        )
        events.append({"name": name, "properties": sorted(_keys(sample))[:100]})
    attributes = sorted(
        _keys(
            Contact.objects.order_by("-pk").values_list("attributes", flat=True)[
                :SAMPLE_CONTACTS
            ]
        )
    )
    return {
        "events": events,
        "attributes": attributes[:300],
        "builtins": [
            {"name": name, "kind": kind} for name, (_column, kind) in BUILTIN.items()
        ],
        "segments": [
            {"id": s.pk, "name": s.name} for s in Segment.objects.order_by("name")
        ],
        # Segments sit below campaigns: template names come from the email events.
        "templates": sorted(
            {
                p.get("template")
                for p in recent.filter(name__startswith="email_")
                .order_by("-pk")
                .values_list("properties", flat=True)[:SAMPLE_EVENTS]
                if isinstance(p, dict) and isinstance(p.get("template"), str)
            }
        ),
        "email_actions": EMAIL_ACTIONS,
        "consent": [
            c for c, _label in Contact._meta.get_field("email_consent").choices
        ],
        **{name: read() for name, read in VOCABULARY_PARTS.items()},
    }
