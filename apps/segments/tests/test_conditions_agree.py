"""The two implementations of the condition language agree on every input.

Hypothesis generates conditions over a small vocabulary (so they hit the data) and
contacts with events and memberships (mixed types, missing keys, nulls, ties in time,
odd timezones), then compares the SQL answer over all contacts with the Python answer
for each contact. On PostgreSQL.
"""

import datetime as dt

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.contacts.models import Contact
from apps.events.models import Event, Source
from apps.segments.conditions import (
    evaluate_facts,
    load_facts,
    matching_sql,
    references,
    validate,
)
from apps.segments.models import Segment, SegmentMembership
from apps.segments.tests.memory import facts_in_memory

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)

TEXTS = ["pro", "Pro", "PRO plan", "free", "", "shoes", "Shoes-X", "é-ü", "zz", "a"]
DATES = [
    "2026-11-20",
    "2026-11-25",
    "2025-11-26",
    "2024-02-29",
    "2026-12-02T10:00:00Z",
    "1990-11-25",
    "2026-11-2x",
    "nope",
]
NUMBERS = [-5, 0, 1, 2, 3, 10, 99.5, 100, 0.25]
scalars = st.one_of(
    st.sampled_from(TEXTS),
    st.sampled_from(DATES),
    st.sampled_from(NUMBERS),
    st.booleans(),
    st.none(),
)
json_values = st.one_of(
    scalars, st.lists(st.sampled_from([*TEXTS, 1, True]), max_size=3)
)

ATTRIBUTE_KEYS = ["plan", "age", "tags", "birthday", "nested.city"]
EVENT_NAMES = ["viewed", "bought", "clicked"]
PROPERTY_KEYS = ["price", "category", "sku.id"]
TIMEZONES = [
    "",
    "UTC",
    "Asia/Tokyo",
    "America/Los_Angeles",
    "Pacific/Kiritimati",
    "Not/AZone",
]


def _nest(key: str, value):
    parts = key.split(".")
    for part in reversed(parts[1:]):
        value = {part: value}
    return parts[0], value


def _json_object(keys):
    return st.dictionaries(st.sampled_from(keys), json_values, max_size=4).map(
        lambda d: dict(_nest(k, v) for k, v in d.items())
    )


comparison_ops = st.sampled_from(
    [
        "eq",
        "ne",
        "gt",
        "gte",
        "lt",
        "lte",
        "contains",
        "starts_with",
        "in",
        "exists",
        "not_exists",
        "before",
        "after",
        "within_past",
        "more_than_past",
        "within_future",
        "more_than_future",
        "anniversary",
    ]
)


@st.composite
def comparisons(draw):
    op = draw(comparison_ops)
    if op in {"exists", "not_exists"}:
        return {"op": op}
    if op == "in":
        return {
            "op": op,
            "value": draw(
                st.lists(
                    st.one_of(
                        st.sampled_from(TEXTS), st.sampled_from(NUMBERS), st.booleans()
                    ),
                    min_size=1,
                    max_size=3,
                )
            ),
        }
    if op in {"eq", "ne"}:
        return {
            "op": op,
            "value": draw(
                st.one_of(
                    st.sampled_from(TEXTS + DATES),
                    st.sampled_from(NUMBERS),
                    st.booleans(),
                )
            ),
        }
    if op in {"gt", "gte", "lt", "lte"}:
        return {
            "op": op,
            "value": draw(
                st.one_of(st.sampled_from(TEXTS + DATES), st.sampled_from(NUMBERS))
            ),
        }
    if op in {"contains", "starts_with"}:
        return {
            "op": op,
            "value": draw(st.sampled_from(["pro", "P", "", "shoe", "x", "é", "-"])),
        }
    if op in {"before", "after"}:
        return {
            "op": op,
            "value": draw(st.sampled_from(["2026-11-21", "2024-02-29", "2000-01-01"])),
        }
    if op == "anniversary":
        return {"op": op, "value": draw(st.sampled_from([0, 1, 7, 365]))}
    return {"op": op, "value": draw(st.sampled_from([0, 1, 3, 30, 400]))}


BUILTIN_COMPARISONS = {
    "first_name": st.fixed_dictionaries(
        {
            "op": st.sampled_from(
                [
                    "eq",
                    "ne",
                    "contains",
                    "starts_with",
                    "gt",
                    "exists",
                    "not_exists",
                    "in",
                ]
            ),
            "value": st.sampled_from(TEXTS),
        }
    ).map(lambda c: {**c, "value": [c["value"]]} if c["op"] == "in" else c),
    "score": st.fixed_dictionaries(
        {
            "op": st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]),
            "value": st.sampled_from(NUMBERS),
        }
    ),
    "created_at": st.fixed_dictionaries(
        {
            "op": st.sampled_from(["before", "after"]),
            "value": st.sampled_from(["2026-11-21", "2026-01-01"]),
        }
    )
    | st.fixed_dictionaries(
        {
            "op": st.sampled_from(
                [
                    "within_past",
                    "more_than_past",
                    "within_future",
                    "more_than_future",
                    "anniversary",
                ]
            ),
            "value": st.sampled_from([0, 1, 3, 30]),
        }
    ),
    "last_seen_at": st.fixed_dictionaries(
        {
            "op": st.sampled_from(["exists", "not_exists", "within_past"]),
            "value": st.just(5),
        }
    ),
}

windows = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {
            "last": st.sampled_from([1, 2, 5, 30]),
            "unit": st.sampled_from(["minutes", "hours", "days"]),
        }
    ),
)
filters = st.lists(
    st.builds(
        lambda key, comparison: {"property": key, **comparison},
        st.sampled_from(PROPERTY_KEYS),
        comparisons(),
    ),
    max_size=2,
)


@st.composite
def leaves(draw):
    kind = draw(
        st.sampled_from(
            [
                "attribute",
                "builtin",
                "event",
                "sequence",
                "last_event",
                "score",
                "consent",
                "segment",
            ]
        )
    )
    if kind == "attribute":
        return {
            "attribute": draw(st.sampled_from(ATTRIBUTE_KEYS)),
            **draw(comparisons()),
        }
    if kind == "builtin":
        name = draw(st.sampled_from(list(BUILTIN_COMPARISONS)))
        return {"attribute": name, **draw(BUILTIN_COMPARISONS[name])}
    if kind == "event":
        node = {
            "event": draw(st.sampled_from(EVENT_NAMES)),
            "where": draw(filters),
            "count": {
                "op": draw(st.sampled_from(["gte", "gt", "lt", "lte", "eq", "ne"])),
                "value": draw(st.integers(0, 3)),
            },
        }
        window = draw(windows)
        return {**node, "window": window} if window else node
    if kind == "sequence":
        steps = draw(
            st.lists(
                st.builds(
                    lambda e, w: {"event": e, "where": w},
                    st.sampled_from(EVENT_NAMES),
                    filters,
                ),
                min_size=2,
                max_size=3,
            )
        )
        node = {"sequence": steps}
        within = draw(windows)
        if within:
            node["within"] = within
        if draw(st.booleans()):
            node["not_followed_by"] = {"event": draw(st.sampled_from(EVENT_NAMES))}
            after_within = draw(windows)
            if after_within:
                node["not_followed_by"]["within"] = after_within
        return node
    if kind == "last_event":
        return {
            "last_event": draw(st.sampled_from(EVENT_NAMES)),
            "property": draw(st.sampled_from(PROPERTY_KEYS)),
            **draw(comparisons()),
        }
    if kind == "score":
        return {
            "score": {
                "op": draw(st.sampled_from(["gte", "lt", "eq", "ne"])),
                "value": draw(st.sampled_from([0, 5, 10])),
            }
        }
    if kind == "consent":
        return {
            "consent": draw(
                st.sampled_from(
                    ["subscribed", "unsubscribed", ["subscribed", "pending"]]
                )
            )
        }
    return {"segment": 1}


def trees(leaf_strategy):
    """all / any / not over the leaves drawn (an app adds its own to leaves())."""
    return st.recursive(
        leaf_strategy,
        lambda children: st.one_of(
            st.builds(lambda items: {"all": items}, st.lists(children, max_size=3)),
            st.builds(lambda items: {"any": items}, st.lists(children, max_size=3)),
            st.builds(lambda item: {"not": item}, children),
        ),
        max_leaves=6,
    )


conditions = trees(leaves())

event_rows = st.lists(
    st.tuples(
        st.sampled_from(EVENT_NAMES),
        _json_object(PROPERTY_KEYS),
        # minutes ago; repeats give ties in time
        st.sampled_from([0, 1, 3, 59, 60, 61, 120, 1439, 1441, 4000, 40000]),
    ),
    max_size=6,
)
contact_rows = st.lists(
    st.fixed_dictionaries(
        {
            "attributes": _json_object(ATTRIBUTE_KEYS),
            "first_name": st.sampled_from(TEXTS),
            "score": st.sampled_from([0, 5, 10, -1]),
            "email_consent": st.sampled_from(["subscribed", "unsubscribed", "pending"]),
            "timezone": st.sampled_from(TIMEZONES),
            "created_days_ago": st.sampled_from([0, 1, 2, 365, 730, -3]),
            "last_seen": st.booleans(),
            "member": st.booleans(),
            "events": event_rows,
        }
    ),
    min_size=1,
    max_size=5,
)


class Rollback(Exception):
    pass


@pytest.mark.django_db
@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(condition=conditions, people=contact_rows)
def test_sql_and_python_agree(require_postgres, condition, people):
    assert validate(condition) == [], validate(condition)
    try:
        with transaction.atomic():
            assert_agree(condition, make_people(people))
            raise Rollback
    except Rollback:
        pass


def make_people(people) -> list[Contact]:
    """The contacts contact_rows() drew, with their events and memberships."""
    source = Source.objects.create(name="agree", kind="server")
    segment = Segment.objects.create(pk=1, name="s1")
    contacts = []
    for n, person in enumerate(people):
        contact = Contact.objects.create(
            attributes=person["attributes"],
            first_name=person["first_name"],
            score=person["score"],
            email_consent=person["email_consent"],
            timezone=person["timezone"],
            last_seen_at=NOW - dt.timedelta(days=2) if person["last_seen"] else None,
        )
        Contact.objects.filter(pk=contact.pk).update(
            created_at=NOW - dt.timedelta(days=person["created_days_ago"], hours=n)
        )
        contact.refresh_from_db()
        contacts.append(contact)
        Event.objects.bulk_create(
            Event(
                contact=contact,
                source=source,
                name=name,
                properties=props,
                timestamp=NOW - dt.timedelta(minutes=minutes),
                received_at=NOW,
                message_id=f"{contact.pk}-{i}",
            )
            for i, (name, props, minutes) in enumerate(person["events"])
        )
        if person["member"]:
            SegmentMembership.objects.create(
                segment=segment, contact=contact, entered_at=NOW
            )
    return contacts


def assert_agree(condition, contacts: list[Contact]) -> None:
    """SQL over all contacts and Python for each give the same contacts."""
    sql, params = matching_sql(condition, now=NOW)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        by_sql = {row[0] for row in cursor.fetchall()}
    refs = references(condition)
    by_python = {
        c.pk
        for c in contacts
        if evaluate_facts(condition, load_facts(c, refs, now=NOW), now=NOW)
    }
    assert by_sql == by_python, {"sql": sorted(by_sql), "python": sorted(by_python)}
    in_memory = {
        c.pk
        for c in contacts
        if evaluate_facts(condition, facts_in_memory(c, refs, now=NOW), now=NOW)
    }
    assert by_sql == in_memory, {"sql": sorted(by_sql), "memory": sorted(in_memory)}
