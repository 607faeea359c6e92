"""One contact's events, asked in the database rather than loaded.

Leaves that look back without a time limit ("ever bought", "viewed at least 3
times", "the last order's total", a sequence) read their events here: a count that
stops at the number the condition needs, the latest row, or the leaf's own SQL for
this contact. A contact with 100,000 events costs what one with ten does, where
loading their whole history would fetch every row into Python.
"""

from typing import TYPE_CHECKING

from django.db import connection
from django.db.models import BooleanField
from django.db.models.expressions import RawSQL

from .base import Env, EventFact
from .sql import Dialect

if TYPE_CHECKING:
    from .base import Leaf


def _dialect(env: Env) -> Dialect:
    return Dialect(vendor=connection.vendor, now=env.now, since=env.since)


def _events(contact_id: int, name: str):
    from apps.events.models import Event

    return Event.objects.filter(contact_id=contact_id, name=name).order_by()


def count_events(
    *, contact_id: int, name: str, filters: list | None, start, env: Env, limit: int
) -> int:
    """How many of the contact's ``name`` events match ``filters`` (since ``start``,
    if given), counting no further than ``limit``: a condition on "at least k" or
    "exactly k" needs to know no more than k + 1."""
    from apps.events.models import Event

    from .leaves.common import _where_sql

    events = _events(contact_id, name)
    if start is not None:
        events = events.filter(timestamp__gte=start)
    if filters:
        # The same SQL as the condition compiled over all contacts, so the two
        # implementations keep agreeing (tests/test_conditions_agree.py).
        table = connection.ops.quote_name(Event._meta.db_table)
        sql, params = _where_sql(_dialect(env), table, filters)
        events = events.filter(RawSQL(sql, params, output_field=BooleanField()))
    return events[:limit].count()


def latest_event(*, contact_id: int, name: str) -> EventFact | None:
    """The contact's latest ``name`` event (the higher id of two at the same time)."""
    row = (
        _events(contact_id, name)
        .order_by("-timestamp", "-pk")
        .values_list("pk", "properties", "timestamp")
        .first()
    )
    if row is None:
        return None
    pk, properties, timestamp = row
    return EventFact(
        pk, name, properties if isinstance(properties, dict) else {}, timestamp
    )


def all_events(*, contact_id: int, name: str) -> list[EventFact]:
    """Every one of the contact's ``name`` events, oldest first: for a leaf that
    reads the events themselves (the built-in ones ask for a count or a row)."""
    return [
        EventFact(pk, name, properties if isinstance(properties, dict) else {}, ts)
        for pk, properties, ts in _events(contact_id, name)
        .order_by("timestamp", "pk")
        .values_list("pk", "properties", "timestamp")
        .iterator()
    ]


def holds_in_database(leaf: "Leaf", node: dict, *, contact_id: int, env: Env) -> bool:
    """The leaf's compiled SQL (what segments run over all contacts) for one contact:
    for leaves such as sequences, whose SQL is correlated by contact and so reads
    only this contact's rows through the (contact, name, timestamp) index."""
    from apps.contacts.models import Contact

    table = connection.ops.quote_name(Contact._meta.db_table)
    sql, params = leaf.sql(node, _dialect(env), table)
    return (
        Contact.objects.filter(pk=contact_id)
        .filter(RawSQL(sql, params, output_field=BooleanField()))
        .exists()
    )
