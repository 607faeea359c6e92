"""The leaves' Python on its own: a contact's facts with every event in memory."""

import dataclasses
import datetime as dt

from apps.contacts.models import Contact
from apps.events.models import Event
from apps.segments.conditions import Refs, load_facts
from apps.segments.conditions.base import EventFact, Facts


def facts_in_memory(contact: Contact, refs: Refs, *, now: dt.datetime) -> Facts:
    """What load_facts gives, but with the whole history loaded and nothing left to
    the database: so the in-memory implementation stays held to the SQL one too."""
    events = [
        EventFact(pk, name, props if isinstance(props, dict) else {}, timestamp)
        for pk, name, props, timestamp in Event.objects.filter(
            contact=contact, name__in=refs.event_names
        )
        .order_by("timestamp", "pk")
        .values_list("pk", "name", "properties", "timestamp")
    ]
    facts = load_facts(contact, refs, now=now)
    return dataclasses.replace(facts, events=events, in_database=frozenset())
