"""The topic choices' old history (TopicSubscriptionChange) moves into the consent
records by migration: each row, with its source and who, nothing lost."""

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from apps.events.models import Source

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("campaigns", "0009_confirmation_messages")]
AFTER = [("campaigns", "0010_topic_history_in_consent_records")]
AT = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_the_old_topic_history_becomes_consent_records():
    # given the old history: a browser key's and a server key's identify, staff
    old = migrate(BEFORE)
    try:
        Contact = old.get_model("contacts", "Contact")
        Topic = old.get_model("campaigns", "Topic")
        Change = old.get_model("campaigns", "TopicSubscriptionChange")
        # (only campaigns goes back: the events app's tables are as they are now)
        Source.objects.create(name="Web", kind="browser", public_key="pk-web")
        ada = Contact.objects.create(email="ada@example.com")
        news = Topic.objects.create(name="News", slug="news")
        for subscribed, source, detail in [
            (True, "api", "API key of Backend"),
            (False, "api", "identify from Web"),
            (True, "staff", "eve"),
            (False, "one_click", "message #12"),
        ]:
            Change.objects.create(
                contact=ada,
                topic=news,
                subscribed=subscribed,
                source=source,
                detail=detail,
                at=AT,
            )
    finally:
        # when the migration runs (and, whatever happens, the schema is current)
        new = migrate(AFTER)
    # then
    Record = new.get_model("contacts", "ConsentRecord")
    assert list(
        Record.objects.order_by("pk").values_list(
            "topic", "previous", "value", "source", "who", "at"
        )
    ) == [
        ("news", "unsubscribed", "subscribed", "api_server", "Backend", AT),
        ("news", "subscribed", "unsubscribed", "api_browser", "Web", AT),
        ("news", "unsubscribed", "subscribed", "staff", "eve", AT),
        ("news", "subscribed", "unsubscribed", "one_click", "message #12", AT),
    ]
