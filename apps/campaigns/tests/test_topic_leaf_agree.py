"""The topic leaf joins the property-based agreement test of the condition
language (apps/segments/tests/test_conditions_agree.py): generated conditions mixing
topic leaves with every other kind, over contacts with generated topic choices,
give the same contacts in SQL and in Python. On PostgreSQL."""

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.campaigns.models import Topic
from apps.campaigns.topics import topic_set
from apps.contacts.consent import ConsentProof, Source
from apps.segments.conditions import validate
from apps.segments.tests.test_conditions_agree import (
    Rollback,
    assert_agree,
    contact_rows,
    leaves,
    make_people,
    trees,
)

TOPICS = {"weekly": Topic.Default.OPT_OUT, "deals": Topic.Default.OPT_IN}

topic_leaves = st.fixed_dictionaries(
    {"topic": st.sampled_from(list(TOPICS)), "subscribed": st.booleans()}
)
conditions = trees(st.one_of(leaves(), topic_leaves, topic_leaves))
# Per contact and topic: no choice (the default), in, or out.
choices = st.lists(
    st.fixed_dictionaries(
        {slug: st.sampled_from([None, True, False]) for slug in TOPICS}
    ),
    min_size=5,
    max_size=5,
)


@pytest.mark.django_db
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(condition=conditions, people=contact_rows, chosen=choices)
def test_sql_and_python_agree_with_topic_leaves(
    require_postgres, condition, people, chosen
):
    try:
        with transaction.atomic():
            topics = {
                slug: Topic.objects.create(name=slug.title(), slug=slug, default=d)
                for slug, d in TOPICS.items()
            }
            assert validate(condition) == [], validate(condition)
            contacts = make_people(people)
            for contact, choice in zip(contacts, chosen, strict=False):
                for slug, subscribed in choice.items():
                    if subscribed is not None:
                        topic_set(
                            contact=contact,
                            topic=topics[slug],
                            subscribed=subscribed,
                            proof=ConsentProof(source=Source.IMPORT),
                        )
            assert_agree(condition, contacts)
            raise Rollback
    except Rollback:
        pass
