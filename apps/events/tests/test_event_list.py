"""The events list in admin never reads the whole events table: no COUNT(*) of it,
no date hierarchy, search by exact, indexed values."""

import datetime as dt
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.contacts.models import Contact, Identity
from apps.core.paging import LargeTablePaginator
from apps.events.models import Event

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
EVENTS = Event._meta.db_table
LIST = "/admin/events/event/"


def _events(contact, source, count: int, name: str = "viewed") -> None:
    # event-0 is the oldest, one a minute
    Event.objects.bulk_create(
        Event(
            contact=contact,
            source=source,
            name=name,
            properties={"n": i},
            timestamp=NOW - dt.timedelta(minutes=count - i),
            received_at=NOW,
            message_id=f"{contact.pk}-{name}-{i}",
        )
        for i in range(count)
    )


def _reads_of_events(queries) -> list[str]:
    return [q["sql"] for q in queries if EVENTS in q["sql"]]


def unbounded_counts(sqls: list[str]) -> list[str]:
    """COUNT statements that could read the whole table: those with no LIMIT."""
    return [sql for sql in sqls if "COUNT(" in sql.upper() and "LIMIT" not in sql]


@pytest.fixture
def ada(server_source):
    contact = Contact.objects.create(email="ada@example.com", external_id="u-ada")
    Identity.objects.create(contact=contact, anonymous_id="anon-ada")
    _events(contact, server_source, 150)
    return contact


@pytest.fixture
def bob(server_source):
    contact = Contact.objects.create(email="bob@example.com")
    _events(contact, server_source, 3, name="order_completed")
    return contact


def test_the_event_list_neither_counts_the_table_nor_groups_its_dates(
    admin_client, ada
):
    # when the events list is opened
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(LIST)
    # then it shows the newest events
    assert page.status_code == 200
    assert page.context["cl"].result_list[0].properties == {"n": 149}
    reads = _reads_of_events(queries)
    # and counts no further than the rows it offers
    assert not unbounded_counts(reads), reads
    # and has no date hierarchy (a DISTINCT over every timestamp), nor facets
    assert page.context["cl"].date_hierarchy is None
    assert not [sql for sql in reads if "DISTINCT" in sql.upper()], reads
    assert not re.search(r"date_trunc|django_datetime_trunc", " ".join(reads))


def test_page_two_lists_the_older_events(admin_client, ada):
    # when the second page of 100 is opened
    page = admin_client.get(LIST, {"p": 2})
    # then it holds the 50 oldest
    assert page.status_code == 200
    shown = [event.properties["n"] for event in page.context["cl"].result_list]
    assert shown == list(range(49, -1, -1))


@pytest.mark.parametrize("term", ["ADA@example.com", "u-ada", "anon-ada"])
def test_searching_a_contacts_email_or_ids_finds_their_events(
    admin_client, ada, bob, term
):
    # when the list is searched for Ada by her email (any case) or her ids
    page = admin_client.get(LIST, {"q": term})
    # then it lists her events and nobody else's
    contacts = {event.contact_id for event in page.context["cl"].result_list}
    assert contacts == {ada.pk}
    assert page.context["cl"].paginator.count == 150


def test_searching_an_event_name_finds_exactly_those(admin_client, ada, bob):
    by_name = admin_client.get(LIST, {"q": "order_completed"}).context["cl"]
    assert {e.contact_id for e in by_name.result_list} == {bob.pk}
    assert by_name.paginator.count == 3
    # a messageId is not searched: nothing indexes it on the partitioned table
    by_message_id = admin_client.get(LIST, {"q": f"{ada.pk}-viewed-7"}).context["cl"]
    assert by_message_id.result_count == 0
    # a part of a name is not a name
    assert admin_client.get(LIST, {"q": "order"}).context["cl"].result_count == 0


def test_the_search_box_says_what_can_be_searched(admin_client, ada):
    html = admin_client.get(LIST).content.decode()
    assert "exact email, user id or anonymous id" in html
    assert "an event name" in html


def test_a_list_longer_than_it_offers_says_so_without_counting_it(
    admin_client, ada, monkeypatch, require_postgres
):
    # given lists that offer 100 rows, and statistics that know the 150 events
    monkeypatch.setattr(LargeTablePaginator, "max_rows", 100)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {EVENTS}")
    # when the whole list is opened
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(LIST)
    # then no statement counts events: the estimate says there are more
    assert not [sql for sql in _reads_of_events(queries) if "COUNT(" in sql.upper()]
    html = page.content.decode()
    assert "The first 100 events of about 150" in html
    # and the last page offered is the 100th row's
    assert page.context["cl"].paginator.num_pages == 1


def test_a_search_with_more_matches_than_offered_says_more_than(
    admin_client, ada, monkeypatch
):
    # given lists that offer 100 rows
    monkeypatch.setattr(LargeTablePaginator, "max_rows", 100)
    # when Ada's 150 events are searched for
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(LIST, {"q": "ada@example.com"})
    # then the count stopped at 101 and the page says "more than"
    assert not unbounded_counts(_reads_of_events(queries))
    assert "More than 100 results" in page.content.decode()
