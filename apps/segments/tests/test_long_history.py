"""Conditions without a time limit, for a contact with a long history: the database
counts or finds what they need, and no more than a few rows reach Python."""

import datetime as dt
import re
from contextlib import contextmanager

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.events.models import Event
from apps.segments.conditions import evaluate

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
LONG = 20_000

# Each leaf kind without a window, and what it says of the long history below.
UNBOUNDED = [
    ({"event": "viewed"}, True),
    ({"event": "viewed", "count": {"op": "gte", "value": 3}}, True),
    ({"event": "viewed", "count": {"op": "eq", "value": LONG}}, True),
    ({"event": "viewed", "count": {"op": "lt", "value": LONG}}, False),
    ({"event": "bought", "count": {"op": "eq", "value": 0}}, True),
    (
        {
            "event": "viewed",
            "where": [{"property": "price", "op": "gte", "value": 199}],
            "count": {"op": "eq", "value": LONG // 200},
        },
        True,
    ),
    ({"last_event": "viewed", "property": "sku", "op": "eq", "value": "sku-0"}, True),
    ({"sequence": [{"event": "viewed"}, {"event": "carted"}]}, True),
    ({"sequence": [{"event": "carted"}, {"event": "viewed"}]}, False),
    ({"email": "opened", "count": {"op": "gte", "value": 1}}, False),
]
# The ways a bounded read of events looks: a count over a limited subquery, the
# latest row, an EXISTS.
BOUNDED = re.compile(r"COUNT\(\*\).*LIMIT \d+|LIMIT 1\b|EXISTS\(|EXISTS \(", re.S)


def _history(contact, source, size: int) -> None:
    # Oldest first, one a minute; the latest "viewed" is sku-0, then a cart.
    start = NOW - dt.timedelta(minutes=size + 1)
    Event.objects.bulk_create(
        (
            Event(
                contact=contact,
                source=source,
                name="viewed",
                properties={"sku": f"sku-{size - 1 - i}", "price": i % 200},
                timestamp=start + dt.timedelta(minutes=i),
                received_at=NOW,
                message_id=f"{contact.pk}-{i}",
            )
            for i in range(size)
        ),
        batch_size=5_000,
    )
    Event.objects.create(
        contact=contact,
        source=source,
        name="carted",
        timestamp=NOW,
        received_at=NOW,
        message_id=f"{contact.pk}-cart",
    )


@contextmanager
def rows_returned():
    """Rows the database handed back to Python, by statement (PostgreSQL says how
    many; SQLite does not, and shows -1)."""
    counts: list[int] = []

    def record(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        counts.append(context["cursor"].rowcount)
        return result

    with connection.execute_wrapper(record):
        yield counts


@pytest.fixture
def long_history(make_contact, server_source):
    contact = make_contact(email="loyal@example.com")
    _history(contact, server_source, LONG)
    return contact


def test_conditions_without_a_window_read_a_long_history_in_sql(long_history):
    # given a contact with 20,000 product views and a cart
    for condition, expected in UNBOUNDED:
        # when a condition with no time limit is evaluated for them
        with CaptureQueriesContext(connection) as queries, rows_returned() as rows:
            result = evaluate(condition, long_history, now=NOW)
        # then the answer is right
        assert result is expected, condition
        # and every read of their events is a count, the latest row or an EXISTS
        reads = [q["sql"] for q in queries if Event._meta.db_table in q["sql"]]
        assert reads, condition
        for sql in reads:
            assert BOUNDED.search(sql), (condition, sql)
        # and no more than a row a statement came back (PostgreSQL counts them)
        if connection.vendor == "postgresql":
            assert sum(rows) <= len(queries), (condition, rows)


def test_a_long_history_costs_the_same_statements_as_a_short_one(
    long_history, make_contact, server_source
):
    # given a contact with ten events beside the one with 20,000
    short = make_contact(email="new@example.com")
    _history(short, server_source, 10)
    condition = {"any": [c for c, _expected in UNBOUNDED]}
    # when the same condition is evaluated for each
    with CaptureQueriesContext(connection) as for_short:
        evaluate(condition, short, now=NOW)
    with CaptureQueriesContext(connection) as for_long:
        evaluate(condition, long_history, now=NOW)
    # then both take the same statements
    assert len(for_long) == len(for_short)


def test_a_windowed_read_of_a_name_also_read_without_one_asks_the_database(
    long_history,
):
    # given a condition reading "viewed" both ever and in the last hour
    condition = {
        "all": [
            {"event": "viewed", "count": {"op": "gte", "value": 100}},
            {
                "event": "viewed",
                "window": {"last": 1, "unit": "hours"},
                "count": {"op": "eq", "value": 59},
            },
        ]
    }
    # when it is evaluated for the contact who viewed one a minute
    with rows_returned() as rows:
        result = evaluate(condition, long_history, now=NOW)
    # then both hold, and the history was not loaded
    assert result is True
    if connection.vendor == "postgresql":
        assert sum(rows) < 10


def test_the_count_reads_the_contacts_events_through_an_index(long_history):
    if connection.vendor != "postgresql":
        pytest.skip("EXPLAIN of PostgreSQL's plan")
    # given the count "viewed at least 3 times" for the contact
    with CaptureQueriesContext(connection) as queries:
        evaluate(
            {"event": "viewed", "count": {"op": "gte", "value": 3}},
            long_history,
            now=NOW,
        )
    (sql,) = [q["sql"] for q in queries if Event._meta.db_table in q["sql"]]
    # when PostgreSQL plans it, with no statistics gathered since the inserts
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    # then it reads the contact's rows through an index, not the whole table
    # (an empty partition, one made ahead for months to come, may be "scanned":
    # it has no page to read)
    scans = [line for line in plan.splitlines() if "Seq Scan" in line]
    assert "Index" in plan and all("cost=0.00..0.00" in s for s in scans), plan
