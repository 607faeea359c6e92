import datetime as dt
import itertools

import pytest

from apps.contacts.models import Contact
from apps.events.models import Event

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
_ids = itertools.count()


@pytest.fixture
def now():
    return NOW


@pytest.fixture
def make_contact(db):
    def make(**fields) -> Contact:
        return Contact.objects.create(**fields)

    return make


@pytest.fixture
def add_event(server_source):
    def add(contact, name, ago=dt.timedelta(0), **properties) -> Event:
        return Event.objects.create(
            contact=contact,
            source=server_source,
            name=name,
            properties=properties,
            timestamp=NOW - ago,
            received_at=NOW,
            message_id=f"t-{next(_ids)}",
        )

    return add


@pytest.fixture
def matches():
    """Who a condition holds for, asserting SQL and Python agree."""
    from apps.segments.conditions import (
        evaluate,
        evaluate_facts,
        matching_contacts,
        references,
    )

    from .memory import facts_in_memory

    def run(condition) -> set[int]:
        by_sql = set(matching_contacts(condition, now=NOW).values_list("pk", flat=True))
        by_python = {
            c.pk for c in Contact.objects.all() if evaluate(condition, c, now=NOW)
        }
        assert by_sql == by_python, {"sql": by_sql, "python": by_python}
        refs = references(condition)
        in_memory = {
            c.pk
            for c in Contact.objects.all()
            if evaluate_facts(condition, facts_in_memory(c, refs, now=NOW), now=NOW)
        }
        assert by_sql == in_memory, {"sql": by_sql, "in memory": in_memory}
        return by_sql

    return run
