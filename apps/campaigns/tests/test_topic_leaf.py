"""The topic condition leaf: SQL over all contacts and Python for one agree,
defaults included; segments count by it and follow a change; bad leaves say why."""

import datetime as dt

import pytest

from apps.campaigns.models import Topic
from apps.campaigns.topic_leaf import TopicLeaf
from apps.campaigns.topics import topic_set
from apps.contacts.consent import ConsentProof, Source
from apps.contacts.models import Contact
from apps.core import clock
from apps.segments.conditions import (
    ConditionError,
    count_matching,
    describe,
    dialect,
    evaluate,
    matching_contacts,
    references,
    validate,
)
from apps.segments.conditions.base import Env, Facts
from apps.segments.models import Segment
from apps.segments.services import segment_refresh_full

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def newsletter(db):
    return Topic.objects.create(
        name="Newsletter", slug="newsletter", default=Topic.Default.OPT_OUT
    )


@pytest.fixture
def offers(db):
    return Topic.objects.create(
        name="Offers", slug="offers", default=Topic.Default.OPT_IN
    )


@pytest.fixture
def people(newsletter, offers):
    """Four contacts: no choices; in both; out of both; only in offers."""
    with clock.frozen(NOW):
        bare, keen, gone, mixed = (
            Contact.objects.create(email=f"{name}@example.com")
            for name in ("bare", "keen", "gone", "mixed")
        )
        for contact, news, offer in [
            (keen, True, True),
            (gone, False, False),
            (mixed, False, True),
        ]:
            topic_set(
                contact=contact,
                topic=newsletter,
                subscribed=news,
                proof=ConsentProof(source=Source.API_SERVER),
            )
            topic_set(
                contact=contact,
                topic=offers,
                subscribed=offer,
                proof=ConsentProof(source=Source.API_SERVER),
            )
    return bare, keen, gone, mixed


def matches(condition) -> set[int]:
    """Who the condition holds for, asserting SQL and Python agree."""
    by_sql = set(matching_contacts(condition, now=NOW).values_list("pk", flat=True))
    by_python = {c.pk for c in Contact.objects.all() if evaluate(condition, c, now=NOW)}
    assert by_sql == by_python, {"sql": by_sql, "python": by_python}
    return by_sql


def ids(*contacts) -> set[int]:
    return {c.pk for c in contacts}


def test_an_opt_out_topic_counts_everyone_without_a_no(people):
    bare, keen, gone, mixed = people
    assert matches({"topic": "newsletter", "subscribed": True}) == ids(bare, keen)
    assert matches({"topic": "newsletter", "subscribed": False}) == ids(gone, mixed)


def test_an_opt_in_topic_counts_only_those_who_said_yes(people):
    bare, keen, gone, mixed = people
    assert matches({"topic": "offers", "subscribed": True}) == ids(keen, mixed)
    assert matches({"topic": "offers", "subscribed": False}) == ids(bare, gone)


def test_topic_leaves_combine_with_others(people):
    bare, keen, _gone, mixed = people
    condition = {
        "all": [
            {"topic": "offers", "subscribed": True},
            {"not": {"topic": "newsletter", "subscribed": True}},
        ]
    }
    assert matches(condition) == ids(mixed)
    either = {
        "any": [
            {"topic": "newsletter", "subscribed": True},
            {"topic": "offers", "subscribed": True},
        ]
    }
    assert matches(either) == ids(bare, keen, mixed)


def test_a_contact_not_yet_saved_has_the_defaults(newsletter, offers):
    visitor = Contact(email="new@example.com")
    assert evaluate({"topic": "newsletter", "subscribed": True}, visitor, now=NOW)
    assert not evaluate({"topic": "offers", "subscribed": True}, visitor, now=NOW)


def test_a_segment_on_a_topic_counts_on_postgresql(require_postgres, people):
    bare, keen, _gone, _mixed = people
    segment = Segment.objects.create(
        name="Newsletter readers",
        condition={"topic": "newsletter", "subscribed": True},
    )
    segment_refresh_full(segment=segment, now=NOW)
    segment.refresh_from_db()
    assert segment.member_count == 2
    assert set(
        segment.memberships.filter(exited_at__isnull=True).values_list(
            "contact_id", flat=True
        )
    ) == ids(bare, keen)
    assert count_matching({"topic": "offers", "subscribed": False}, now=NOW) == 2


def test_a_segment_follows_a_topic_change_as_it_happens(
    require_postgres, people, newsletter, run_jobs
):
    # given a segment of the newsletter's readers, refreshed
    bare, keen, _gone, _mixed = people
    segment = Segment.objects.create(
        name="Readers", condition={"topic": "newsletter", "subscribed": True}
    )
    segment_refresh_full(segment=segment)
    run_jobs()
    # when one leaves the newsletter
    topic_set(
        contact=keen,
        topic=newsletter,
        subscribed=False,
        proof=ConsentProof(source=Source.API_SERVER),
    )
    run_jobs()
    # then the segment drops them without a full refresh
    assert set(
        segment.memberships.filter(exited_at__isnull=True).values_list(
            "contact_id", flat=True
        )
    ) == ids(bare)


def test_a_change_records_an_event_a_workflow_can_start_on(people, newsletter):
    _bare, keen, _gone, _mixed = people
    events = keen.events.filter(name__startswith="topic_").order_by("pk")
    assert [(e.name, e.properties["topic"]) for e in events] == [
        ("topic_subscribed", "offers")  # the newsletter's yes was its default
    ]
    topic_set(
        contact=keen,
        topic=newsletter,
        subscribed=False,
        proof=ConsentProof(source=Source.API_SERVER),
    )
    last = keen.events.order_by("-pk").first()
    assert last.name == "topic_unsubscribed"
    assert last.properties == {
        "topic": "newsletter",
        "topic_name": "Newsletter",
        "source": "api_server",
    }


def test_a_topic_leaf_is_re_checked_by_topic_events():
    refs = references({"topic": "newsletter", "subscribed": True})
    assert refs.changed_by == {"topic_subscribed", "topic_unsubscribed"}
    assert refs.event_names == set()


def test_an_unknown_slug_is_an_error_that_names_it_and_the_known_ones(
    newsletter, offers
):
    assert validate({"all": [{"topic": "newsleter", "subscribed": True}]}) == [
        "all[0].topic: no topic has the slug 'newsleter' (topics: newsletter, offers)"
    ]
    with pytest.raises(ConditionError, match="no topic has the slug 'newsleter'"):
        count_matching({"topic": "newsleter", "subscribed": True}, now=NOW)


def test_a_topic_leaf_needs_a_slug_and_a_yes_or_no(newsletter):
    assert validate({"topic": "", "subscribed": True}) == [
        "condition.topic: a topic's slug is required"
    ]
    assert validate({"topic": "newsletter", "subscribed": "yes"}) == [
        "condition.subscribed: true or false is required"
    ]
    assert validate({"topic": "newsletter"}) == [
        "condition.subscribed: true or false is required"
    ]


def test_a_topic_deleted_after_the_condition_was_checked_matches_no_one(people):
    # (a condition checked once is cached by the process: the leaf itself copes)
    leaf = TopicLeaf()
    node = {"topic": "gone-topic", "subscribed": False}
    assert leaf.sql(node, dialect(now=NOW), "c") == ("1=0", [])
    assert not leaf.matches(node, Facts(contact=people[0]), Env(now=NOW))


def test_it_reads_as_english(newsletter):
    assert (
        describe({"topic": "newsletter", "subscribed": True})
        == "Is subscribed to the topic “Newsletter”"
    )
    assert (
        describe(
            {
                "all": [
                    {"consent": "subscribed"},
                    {"topic": "newsletter", "subscribed": False},
                ]
            }
        )
        == "Email consent is subscribed and is not subscribed to the topic “Newsletter”"
    )
