"""Topic subscriptions over real HTTP: the server-key endpoint, and an identify's
``topics`` trait (a browser key may only unsubscribe)."""

import logging
import uuid

import httpx
import pytest

from apps.campaigns.models import Topic, TopicSubscription
from apps.campaigns.topics import subscribed_to
from apps.contacts.models import ConsentRecord, Contact, Identity
from apps.events.selectors import is_pending

pytestmark = pytest.mark.django_db(transaction=True)


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
def ada(db):
    ada = Contact.objects.create(email="ada@example.com", external_id="u-1")
    Identity.objects.create(contact=ada, anonymous_id="anon-ada")
    return ada


@pytest.fixture
def subscriptions(live_server):
    return f"{live_server.url}/api/v1/topics/subscriptions"


def test_a_server_key_sets_and_reads_a_contacts_topics(
    subscriptions, server_source, ada, newsletter, offers
):
    # when
    response = httpx.post(
        subscriptions,
        json={
            "email": "ADA@example.com",
            "topics": {"offers": True, "newsletter": False},
        },
        auth=(server_source.key, ""),
    )
    # then
    assert response.status_code == 200, response.text
    assert response.json() == {
        "contact_id": ada.pk,
        "topics": {"newsletter": False, "offers": True},
        "changed": ["offers", "newsletter"],
    }
    change = ConsentRecord.objects.get(topic="offers")
    assert (change.source, change.who) == ("api_server", "Backend")
    # and each key reads them back
    for params in ({"userId": "u-1"}, {"anonymousId": "anon-ada"}):
        response = httpx.get(subscriptions, params=params, auth=(server_source.key, ""))
        assert response.status_code == 200
        assert response.json()["topics"] == {"newsletter": False, "offers": True}


def test_setting_what_is_in_effect_changes_nothing(
    subscriptions, server_source, ada, newsletter
):
    response = httpx.post(
        subscriptions,
        json={"userId": "u-1", "topics": {"newsletter": True}},
        auth=(server_source.key, ""),
    )
    assert response.json()["changed"] == []
    assert not TopicSubscription.objects.exists()


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (
            {"userId": "u-1", "topics": {"offers": False, "newsleter": True}},
            400,
            "no topic has the slug 'newsleter' (topics: newsletter, offers)",
        ),
        ({"userId": "u-1", "topics": {"offers": "yes"}}, 400, "topics.offers"),
        ({"userId": "u-1", "topics": {"offers": 1}}, 400, "topics.offers"),
        ({"userId": "u-1", "topics": {}}, 400, "topics"),
        ({"topics": {"offers": True}}, 400, "name the contact"),
        ({"userId": "nobody", "topics": {"offers": True}}, 404, "no contact"),
        (
            {"userId": "u-1", "email": "bob@example.com", "topics": {"offers": True}},
            400,
            "name different contacts",
        ),
        ({"userId": "u-\x00", "topics": {"offers": True}}, 400, "NUL"),
    ],
)
def test_bad_input_is_refused_saying_why_and_writes_nothing(
    subscriptions, server_source, ada, newsletter, offers, body, status, says
):
    Contact.objects.create(email="bob@example.com")
    response = httpx.post(subscriptions, json=body, auth=(server_source.key, ""))
    assert response.status_code == status, response.text
    assert says in response.text
    assert not TopicSubscription.objects.exists()
    assert not ConsentRecord.objects.exists()


def test_a_browser_key_may_not_use_the_endpoint(
    subscriptions, browser_source, ada, offers
):
    body = {"userId": "u-1", "topics": {"offers": False}}
    response = httpx.post(subscriptions, json=body, auth=(browser_source.key, ""))
    assert response.status_code == 403
    response = httpx.get(
        subscriptions, params={"userId": "u-1"}, auth=(browser_source.key, "")
    )
    assert response.status_code == 403


def test_an_unknown_contact_to_read_is_404(subscriptions, server_source):
    response = httpx.get(
        subscriptions, params={"email": "x@example.com"}, auth=(server_source.key, "")
    )
    assert response.status_code == 404
    assert response.json() == {"error": "no contact with that email"}


# -- identify ---------------------------------------------------------------------


def identify(topics, user_id="u-1", **traits):
    return {
        "type": "identify",
        "userId": user_id,
        "messageId": str(uuid.uuid4()),
        "traits": {"topics": topics, **traits},
    }


def test_a_server_identify_sets_topics(
    live_server, server_source, ada, newsletter, offers, run_jobs
):
    # when
    response = httpx.post(
        f"{live_server.url}/api/v1/identify",
        json=identify({"offers": True, "newsletter": False}, plan="pro"),
        auth=(server_source.key, ""),
    )
    assert response.status_code == 200
    run_jobs()
    # then the choices are recorded, with their history, and not as an attribute
    ada.refresh_from_db()
    assert subscribed_to(ada, offers) and not subscribed_to(ada, newsletter)
    assert ada.attributes == {"plan": "pro"}
    assert set(ConsentRecord.objects.values_list("source", "who")) == {
        ("api_server", "Backend")
    }


def test_a_browser_identify_may_unsubscribe_but_not_subscribe(
    live_server, browser_source, ada, newsletter, offers, run_jobs, caplog
):
    # when a browser key sends both
    response = httpx.post(
        f"{live_server.url}/api/v1/identify",
        json=identify({"offers": True, "newsletter": False}),
        auth=(browser_source.key, ""),
    )
    assert response.status_code == 200
    with caplog.at_level(logging.WARNING):
        run_jobs()
    # then the unsubscribe is applied, the subscribe refused and logged
    assert not subscribed_to(ada, newsletter)
    assert not subscribed_to(ada, offers)
    refusals = [r for r in caplog.records if "browser key refused" in r.getMessage()]
    assert [r.getMessage() for r in refusals] == [
        f"browser key refused: topics.offers of contact {ada.pk} not applied "
        "(a browser key may only unsubscribe from a topic)"
    ]
    # and the event is kept as sent
    event = ada.events.get(name="identify")
    assert event.properties["traits"]["topics"] == {"offers": True, "newsletter": False}


def test_an_identify_with_an_unknown_topic_applies_none_of_its_choices(
    live_server, server_source, ada, newsletter, offers, run_jobs, caplog
):
    response = httpx.post(
        f"{live_server.url}/api/v1/identify",
        json=identify({"offers": True, "newsleter": False}),
        auth=(server_source.key, ""),
    )
    assert response.status_code == 200
    with caplog.at_level(logging.WARNING):
        run_jobs()
    assert not TopicSubscription.objects.exists()
    assert any("'newsleter'" in r.getMessage() for r in caplog.records)
    assert not is_pending(ada.events.get(name="identify").pk)
