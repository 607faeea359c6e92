"""The condition language: one JSON tree, two implementations that agree.

    {"version": 1, "all": [
        {"event": "product_viewed", "count": {"op": "gte", "value": 3},
         "window": {"last": 7, "unit": "days"}},
        {"not": {"event": "order_completed", "window": {"last": 24, "unit": "hours"}}}
    ]}

``all`` / ``any`` / ``not`` over leaves (see leaves.py; apps register more with
``register_leaf``). ``matching_contacts`` compiles a condition to one SQL query over
all contacts (segments, counts, broadcasts); ``evaluate`` answers it for one contact
(the hot path of triggers): in Python over the events it loads, which are only those
within the condition's windows; what looks back without a limit is counted or found
in the database for that contact (history.py). ``describe`` says it in English.
"""

import datetime as dt
import json
from typing import Any

from django.db import connection
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL

from apps.contacts.models import Contact
from apps.core import clock

from . import leaves as _leaves
from .base import (
    LEAVES,
    ConditionError,
    Env,
    EventFact,
    Facts,
    Leaf,
    Refs,
    leaf_for,
    register_leaf,
)
from .base import join as _join
from .sql import Dialect, Fragment

__all__ = [
    "SCHEMA_VERSION",
    "ConditionError",
    "Leaf",
    "Refs",
    "check",
    "checked",
    "count_matching",
    "describe",
    "evaluate",
    "evaluate_facts",
    "event_matches_filters",
    "filters_errors",
    "load_facts",
    "matching_contacts",
    "matching_sql",
    "references",
    "register_leaf",
    "to_sql",
    "upgrade",
    "validate",
]

SCHEMA_VERSION = 1
MAX_DEPTH = 12
MAX_NODES = 200
# The contacts table's alias in compiled SQL: the query is self-contained, so it can be
# composed into any ORM query as ``pk IN (...)``.
CONTACT = "c"


def upgrade(condition: Any) -> Any:
    """Bring a stored condition up to SCHEMA_VERSION (version 1 is the first)."""
    if (
        isinstance(condition, dict)
        and condition.get("version", SCHEMA_VERSION) > SCHEMA_VERSION
    ):
        raise ConditionError(
            [f"version: {condition['version']} is newer than this Nudge"]
        )
    return condition


def _children(node: dict) -> tuple[str, list] | None:
    for key in ("all", "any"):
        if key in node:
            return key, node[key]
    return None


def validate(condition: Any) -> list[str]:
    """Every problem in the tree, each naming its node ("any[1].op: unknown ...")."""
    errors: list[str] = []
    count = [0]

    def walk(node: Any, where: str, depth: int) -> None:
        count[0] += 1
        here = where or "condition"
        if depth > MAX_DEPTH:
            errors.append(f"{here}: nested deeper than {MAX_DEPTH} levels")
            return
        if not isinstance(node, dict):
            errors.append(f"{here}: a condition is a JSON object")
            return
        group = _children(node)
        if group:
            key, items = group
            if not isinstance(items, list):
                errors.append(f"{here}.{key}: a list of conditions")
                return
            for i, item in enumerate(items):
                walk(item, f"{where}.{key}[{i}]" if where else f"{key}[{i}]", depth + 1)
            return
        if "not" in node:
            walk(node["not"], f"{where}.not" if where else "not", depth + 1)
            return
        leaf = leaf_for(node)
        if leaf is None:
            known = ", ".join(["all", "any", "not", *LEAVES])
            errors.append(f"{here}: unknown condition (expected one of: {known})")
            return
        if _holds_nul(node):
            # PostgreSQL text cannot hold one: comparing with it is an error, not false.
            errors.append(f"{here}: text may not contain a NUL character (\\u0000)")
            return
        errors.extend(leaf.validate(node, here))

    if isinstance(condition, dict) and not isinstance(condition.get("version", 1), int):
        errors.append("version: a whole number")
    walk(condition, "", 0)
    if count[0] > MAX_NODES:
        errors.append(f"condition: more than {MAX_NODES} parts")
    return errors


def _holds_nul(node: dict) -> bool:
    """Whether any key or text in a leaf, however deep, has a NUL character."""
    pending: list[Any] = [node]
    while pending:  # a loop, not recursion: a value may be nested deep
        value = pending.pop()
        if isinstance(value, str) and "\x00" in value:
            return True
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


def check(condition: Any) -> Any:
    """The condition, upgraded; raises ConditionError if it does not validate."""
    condition = upgrade(condition)
    errors = validate(condition)
    if errors:
        raise ConditionError(errors)
    return condition


_checked: dict[str, tuple[Any, Refs]] = {}


def checked(condition: Any) -> tuple[Any, Refs]:
    """check() and references() of a condition, worked out once per process for each
    distinct condition: the hot paths (an incoming event against every segment that
    reads it, a branch for every contact) evaluate the same few conditions over and
    over. Callers must not change what they get back."""
    key = json.dumps(condition, sort_keys=True, default=str)
    found = _checked.get(key)
    if found is None:
        condition = check(json.loads(key))  # a copy: the caller's dict may change
        found = (condition, references(condition))
        if len(_checked) > 1000:
            _checked.clear()
        _checked[key] = found
    return found


# -- SQL ------------------------------------------------------------------------------


def _node_sql(node: dict, d: Dialect) -> Fragment:
    group = _children(node)
    if group:
        key, items = group
        if not items:
            return ("(1=1)", []) if key == "all" else ("(1=0)", [])
        parts = [_node_sql(item, d) for item in items]
        word = " AND " if key == "all" else " OR "
        return "(" + word.join(p[0] for p in parts) + ")", [
            x for p in parts for x in p[1]
        ]
    if "not" in node:
        sql, params = _node_sql(node["not"], d)
        return f"(NOT {sql})", params
    leaf = leaf_for(node)
    sql, params = leaf.sql(node, d, CONTACT)
    return f"({sql})", params


def dialect(
    *, now: dt.datetime | None = None, since: dt.datetime | None = None
) -> Dialect:
    return Dialect(vendor=connection.vendor, now=now or clock.now(), since=since)


def to_sql(condition: Any, d: Dialect) -> Fragment:
    """A boolean SQL expression over the contacts table (aliased as Django names it)."""
    condition = check(condition)
    if _needs_timezones(condition):
        d.timezones = list(
            Contact.objects.order_by().values_list("timezone", flat=True).distinct()
        )
    return _node_sql(condition, d)


def _needs_timezones(condition: Any) -> bool:
    found = False

    def walk(node: dict) -> None:
        nonlocal found
        group = _children(node)
        if group:
            for item in group[1]:
                walk(item)
        elif "not" in node:
            walk(node["not"])
        elif node.get("op") == "anniversary" and "attribute" in node:
            found = True

    walk(condition)
    return found


def matching_sql(
    condition: Any, *, now: dt.datetime | None = None, since: dt.datetime | None = None
) -> Fragment:
    """``SELECT c.id FROM contacts c WHERE <condition>``, with its parameters."""
    sql, params = to_sql(condition, dialect(now=now, since=since))
    return (
        f"SELECT {CONTACT}.id FROM {Contact._meta.db_table} {CONTACT} WHERE {sql}",
        params,
    )


def matching_contacts(
    condition: Any, *, now: dt.datetime | None = None, since: dt.datetime | None = None
) -> QuerySet[Contact]:
    """Every contact the condition holds for (one SQL query, composable)."""
    sql, params = matching_sql(condition, now=now, since=since)
    return Contact.objects.filter(pk__in=RawSQL(sql, params))


def count_matching(condition: Any, *, now: dt.datetime | None = None) -> int:
    sql, params = matching_sql(condition, now=now)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM ({sql}) matching", params)
        return cursor.fetchone()[0]


# -- Python ---------------------------------------------------------------------------


def _node_matches(node: dict, facts: Facts, env: Env) -> bool:
    group = _children(node)
    if group:
        key, items = group
        results = (_node_matches(item, facts, env) for item in items)
        return all(results) if key == "all" else any(results)
    if "not" in node:
        return not _node_matches(node["not"], facts, env)
    return leaf_for(node).matches(node, facts, env)


def references(condition: Any) -> Refs:
    refs = Refs()

    def walk(node: dict) -> None:
        group = _children(node)
        if group:
            for item in group[1]:
                walk(item)
        elif "not" in node:
            walk(node["not"])
        else:
            leaf_for(node).collect(node, refs)

    walk(upgrade(condition))
    return refs


def load_facts(contact: Contact, refs: Refs, *, now: dt.datetime) -> Facts:
    """The contact's events (only the names the condition reads, only as far back as
    it looks) and segment memberships.

    Names read without a time limit are left in the database (Facts.in_database):
    their leaves ask it for a count or a row, rather than load the whole history.
    """
    from apps.segments.models import SegmentMembership

    events: list[EventFact] = []
    in_database: frozenset[str] = frozenset()
    if refs.event_names and contact.pk:
        in_database = frozenset(
            n for n, delta in refs.events_since.items() if delta is None
        )
        bounded = [d for d in refs.events_since.values() if d is not None]
        since = now - max(bounded) if bounded else None
        names = sorted(refs.event_names - in_database)
        events = [
            EventFact(
                id=pk,
                name=name,
                properties=properties if isinstance(properties, dict) else {},
                timestamp=timestamp,
            )
            for pk, name, properties, timestamp in (
                _contact_events(contact.pk, names, since) if names else []
            )
        ]
    segment_ids: set[int] = set()
    if refs.segment_ids and contact.pk:
        segment_ids = set(
            SegmentMembership.objects.filter(
                contact_id=contact.pk,
                segment_id__in=refs.segment_ids,
                exited_at__isnull=True,
            ).values_list("segment_id", flat=True)
        )
    return Facts(
        contact=contact,
        events=events,
        segment_ids=segment_ids,
        in_database=in_database,
    )


def _contact_events(contact_id: int, names: list[str], since: dt.datetime | None):
    """(id, name, properties, timestamp) of a contact's events of these names, oldest
    first. Plain SQL: this runs for every incoming event, and building the same
    query with the ORM each time cost more than PostgreSQL took to answer it."""
    from apps.events.models import Event

    field = Event._meta.get_field("properties")
    table = Event._meta.db_table
    marks = ", ".join(["%s"] * len(names))
    sql = (
        f"SELECT id, name, properties, timestamp FROM {table} "
        f"WHERE contact_id = %s AND name IN ({marks})"
    )
    params: list[Any] = [contact_id, *names]
    if since is not None:
        sql += " AND timestamp >= %s"
        params.append(connection.ops.adapt_datetimefield_value(since))
    sql += " ORDER BY timestamp, id"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if connection.vendor == "sqlite":  # text there: parse like the ORM does
        convert = connection.ops.convert_datetimefield_value
        rows = [(pk, n, p, convert(ts, None, connection)) for pk, n, p, ts in rows]
    return [
        (pk, name, field.from_db_value(properties, None, connection), timestamp)
        for pk, name, properties, timestamp in rows
    ]


def evaluate_facts(
    condition: Any, facts: Facts, *, now: dt.datetime, since: dt.datetime | None = None
) -> bool:
    return _node_matches(upgrade(condition), facts, Env(now=now, since=since))


def evaluate(
    condition: Any,
    contact: Contact,
    *,
    now: dt.datetime | None = None,
    since: dt.datetime | None = None,
) -> bool:
    """Does the condition hold for this one contact? (Python, no query over others.)"""
    condition, refs = checked(condition)
    now = now or clock.now()
    facts = load_facts(contact, refs, now=now)
    return evaluate_facts(condition, facts, now=now, since=since)


def filters_errors(filters: Any, where: str = "filters") -> list[str]:
    """Validation of a property-filter list ([{"property", "op", "value"}])."""
    return _leaves._where_errors(filters, where)


def event_matches_filters(
    properties: dict, filters: list | None, *, now: dt.datetime
) -> bool:
    fact = EventFact(id=0, name="", properties=properties or {}, timestamp=now)
    return _leaves._where_matches(fact, filters, _leaves.Today(now))


# -- English --------------------------------------------------------------------------


def describe(condition: Any) -> str:
    """The condition as a sentence marketers can read."""
    if not condition:
        return "everyone"

    def say(node: dict, top: bool = False) -> str:
        group = _children(node)
        if group:
            key, items = group
            if not items:
                return "everyone" if key == "all" else "no one"
            parts = [say(item) for item in items]
            text = _join(parts, "and" if key == "all" else "or")
            return text if top or len(parts) == 1 else f"({text})"
        if "not" in node:
            return f"not {say(node['not'])}"
        leaf = leaf_for(node)
        return leaf.describe(node) if leaf else "(unknown condition)"

    try:
        text = say(upgrade(condition), top=True)
    except (ConditionError, KeyError, TypeError, AttributeError):
        return "(invalid condition)"
    return text[:1].upper() + text[1:]
