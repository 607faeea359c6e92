"""The admin lists of tables that grow with traffic (messages, enrollments, trigger
decisions, contacts, merges, webhook deliveries) neither count nor group the whole
table, and search by a contact's exact email or ids."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.campaigns.models import Message
from apps.core import clock
from apps.workflows.models import Enrollment, TriggerDecision

pytestmark = pytest.mark.django_db

LISTS = {
    "/admin/campaigns/message/": Message,
    "/admin/workflows/enrollment/": Enrollment,
    "/admin/workflows/triggerdecision/": TriggerDecision,
}


@pytest.fixture
def histories(customer, make_workflow, templates):
    """Ada and Bob, each with a message, an enrollment and a trigger decision."""
    workflow = make_workflow(
        "Welcome",
        trigger={"type": "manual"},
        steps=[{"key": "hold", "type": "wait", "config": {"duration": {"days": 1}}}],
    )
    people = [customer("ada"), customer("bob")]
    for contact in people:
        Message.objects.create(
            contact=contact,
            template=templates["Welcome"],
            subject="Hi",
            created_at=clock.now(),
            send_after=clock.now(),
        )
        Enrollment.objects.create(
            workflow=workflow,
            version=workflow.current_version,
            contact=contact,
            entered_at=clock.now(),
        )
        TriggerDecision.objects.create(
            workflow=workflow,
            contact=contact,
            event_name="signed_up",
            reason="already enrolled",
            decided_at=clock.now(),
        )
    return people


def _whole_table_reads(queries, table: str) -> list[str]:
    """Statements on ``table`` that read all of it: a COUNT with no LIMIT, a
    DISTINCT or GROUP BY over it."""
    found = []
    for query in queries:
        sql = query["sql"].upper()
        if table.upper() not in sql:
            continue
        if ("COUNT(" in sql and "LIMIT" not in sql) or "DISTINCT" in sql:
            found.append(query["sql"])
    return found


OTHER_LISTS = [
    "/admin/contacts/contact/",
    "/admin/contacts/contactmerge/",
    "/admin/workflows/webhookdelivery/",
]


@pytest.mark.parametrize("url", [*LISTS, *OTHER_LISTS])
def test_a_large_tables_list_counts_no_further_than_it_shows(
    admin_client, histories, url
):
    for params in ({}, {"q": "ada@example.com"}, {"q": "nobody"}, {"_facets": ""}):
        # when the list is opened, searched or asked for facet counts
        with CaptureQueriesContext(connection) as queries:
            page = admin_client.get(url, params)
        # then no statement reads the whole table
        assert page.status_code == 200, (url, params)
        table = page.context["cl"].model._meta.db_table
        assert not _whole_table_reads(queries, table), (url, params)


@pytest.mark.parametrize("url", LISTS)
@pytest.mark.parametrize("term", ["ADA@example.com", "ada"])
def test_searching_a_contacts_email_or_user_id_lists_only_their_rows(
    admin_client, histories, url, term
):
    ada, _bob = histories
    # when a list is searched by Ada's email (any case) or user id
    page = admin_client.get(url, {"q": term})
    # then only her rows are listed
    assert {row.contact_id for row in page.context["cl"].result_list} == {ada.pk}


def test_a_message_is_found_by_its_id_and_its_esps_id(admin_client, histories):
    ada, _bob = histories
    message = Message.objects.get(contact=ada)
    Message.objects.filter(pk=message.pk).update(esp_message_id="esp-123")
    for term in (str(message.pk), "esp-123"):
        page = admin_client.get("/admin/campaigns/message/", {"q": term})
        assert [row.pk for row in page.context["cl"].result_list] == [message.pk]
