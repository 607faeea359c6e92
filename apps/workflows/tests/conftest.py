"""Scenario tests drive Nudge as a shop would: events over real HTTP, emails out
through Anymail's test backend, and the clock moved instead of waited for."""

import datetime as dt
import re
import uuid

import httpx
import pytest

from apps.campaigns.models import EmailTemplate
from apps.contacts.models import Contact
from apps.core import clock
from apps.workflows.models import Enrollment, Workflow
from apps.workflows.services import workflow_activate, workflow_create
from tests.processes import wait_for

__all__ = ["wait_for"]  # for the tests that import it from here

START = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def frozen_clock():
    with clock.frozen(START):
        yield


class Shop:
    """A site sending events to Nudge over HTTP with its server key."""

    def __init__(self, url: str, key: str) -> None:
        self.client = httpx.Client(base_url=f"{url}/api/v1", auth=(key, ""), timeout=10)

    def track(
        self,
        user: str,
        event: str,
        *,
        timestamp: dt.datetime | None = None,
        **properties,
    ) -> None:
        """A track call; ``timestamp``: when it happened, if not now (a late batch)."""
        message = {
            "userId": user,
            "event": event,
            "properties": properties,
            "messageId": str(uuid.uuid4()),
        }
        if timestamp is not None:
            message["timestamp"] = timestamp.isoformat()
        response = self.client.post("/track", json=message)
        assert response.status_code == 200, response.text

    def identify(self, user: str, **traits) -> None:
        response = self.client.post(
            "/identify",
            json={
                "userId": user,
                "traits": traits,
                "messageId": str(uuid.uuid4()),
            },
        )
        assert response.status_code == 200, response.text


@pytest.fixture
def shop(live_server, server_source, frozen_clock):
    shop = Shop(live_server.url, server_source.key)
    yield shop
    shop.client.close()


@pytest.fixture
def templates(layout):
    made = {}
    for name in (
        "Cart reminder",
        "Welcome",
        "Tips",
        "Nudge",
        "Birthday",
        "Win back",
        "A",
        "B",
        "Browse",
    ):
        made[name] = EmailTemplate.objects.create(
            name=name,
            subject=f"{name} for {{{{ contact.first_name | default: 'you' }}}}",
            html_body=f"<p>{name}</p>{{% if event.properties.cart_id %}}<p>cart {{{{ event.properties.cart_id }}}}</p>{{% endif %}}",
            layout=layout,
        )
    return made


@pytest.fixture
def make_workflow(templates):
    def make(name: str, activate: bool = True, **definition) -> Workflow:
        definition.setdefault("reentry", {"rule": "every_time"})
        workflow = workflow_create(name=name, definition=definition)
        if activate:
            workflow_activate(workflow=workflow)
        return workflow

    return make


def emails_to(outbox, email: str) -> list[str]:
    return [m.subject for m in outbox if m.to == [email]]


@pytest.fixture
def customer(db):
    def make(user: str, **fields) -> Contact:
        fields.setdefault("email", f"{user}@example.com")
        return Contact.objects.create(external_id=user, **fields)

    return make


# -- plans on stale statistics --------------------------------------------------------


def enrolled_on_stale_statistics(make_workflow, count: int = 20_000):
    """A workflow whose runs table was ANALYZEd while empty (autovacuum may be off),
    and then ``count`` contacts waiting in it, as a schedule would leave them: the
    statistics a hot query must not depend on. The contacts and their runs."""
    from django.db import connection

    from apps.core import clock

    workflow = make_workflow(
        "Weekly",
        trigger={"type": "manual"},
        steps=[{"key": "hold", "type": "wait", "config": {"duration": {"days": 1}}}],
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE workflows_enrollment")
    contacts = Contact.objects.bulk_create(
        Contact(email=f"c{i}@example.com") for i in range(count)
    )
    enrollments = Enrollment.objects.bulk_create(
        Enrollment(
            workflow=workflow,
            version=workflow.current_version,
            contact=contact,
            status="waiting",
            entered_at=clock.now(),
            occurrence_key="cron:1",
        )
        for contact in contacts
    )
    return contacts, enrollments


def assert_read_by_key(queries) -> None:
    """Every captured statement, as PostgreSQL runs it now, reads the rows it needs
    by index: no scan of the runs table, fewer than 100 rows read and dropped."""
    from django.db import connection

    for query in queries.captured_queries:
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN ANALYZE {query['sql']}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
        removed = [int(n) for n in re.findall(r"Rows Removed by \w+: (\d+)", plan)]
        assert "Seq Scan on workflows_enrollment" not in plan, plan
        assert sum(removed) < 100, plan
