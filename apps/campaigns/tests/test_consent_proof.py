"""Proof of consent from the person's own links and the API, over real HTTP: the
preference page (with the page's own wording), the one-click unsubscribe, the
topics endpoint and an identify's topics, each with its source, who and IP."""

import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from apps.campaigns.context import link_urls, signed_url
from apps.campaigns.models import Topic
from apps.campaigns.services import message_create
from apps.campaigns.tokens import CONFIRM_SALT, make_contact_token
from apps.contacts.consent import Source
from apps.contacts.models import ConsentRecord, ConsentStatus, Contact, Identity

pytestmark = pytest.mark.django_db(transaction=True)

PERSON_IP = "203.0.113.77"


@pytest.fixture
def behind_a_proxy(settings):
    """The person's address as a trusted proxy passes it on."""
    settings.NUDGE_TRUSTED_PROXY_HEADER = "X-Forwarded-For"
    settings.NUDGE_TRUSTED_PROXY_COUNT = 1
    return {"X-Forwarded-For": PERSON_IP}


@pytest.fixture
def offers(db):
    return Topic.objects.create(
        name="Offers", slug="offers", description="Deals, twice a month"
    )


@pytest.fixture
def message(contact, template):
    message, _ = message_create(contact=contact, template=template)
    return message


def _url(live_server, link: str) -> str:
    return live_server.url + urlsplit(link).path


def test_the_preference_page_records_each_choice_with_its_wording_and_the_ip(
    live_server, behind_a_proxy, contact, message, offers
):
    # given the page the person reaches from their email
    url = _url(
        live_server,
        link_urls(contact_id=contact.pk, message_id=message.pk)["preferences_url"],
    )
    page = httpx.get(url, headers=behind_a_proxy).text
    assert "Unsubscribe me from all marketing email" in page
    assert "What we send you" in page
    # when they join offers and unsubscribe from all marketing email
    response = httpx.post(
        url,
        data={
            "marketing": "unsubscribe",
            "topics_shown": [str(offers.pk)],
            "topic": [str(offers.pk)],
        },
        headers=behind_a_proxy,
    )
    # then each change is recorded, with what the page said next to the choice
    assert response.status_code == 200
    email, topic = (
        ConsentRecord.objects.get(contact=contact, topic=""),
        ConsentRecord.objects.get(contact=contact, topic="offers"),
    )
    assert (email.previous, email.value, email.source) == (
        "subscribed",
        "unsubscribed",
        Source.PREFERENCES,
    )
    assert email.wording == "Unsubscribe me from all marketing email"
    assert (topic.previous, topic.value) == ("unsubscribed", "subscribed")
    assert topic.wording == "What we send you: Offers — Deals, twice a month"
    for record in (email, topic):
        assert record.who == f"ada@example.com (link in message #{message.pk})"
        assert record.ip == "203.0.113.0"
        assert record.form == "preference page"


def test_saving_the_preference_page_as_it_is_records_nothing(
    live_server, contact, offers
):
    url = _url(
        live_server,
        link_urls(contact_id=contact.pk, message_id=None)["preferences_url"],
    )
    response = httpx.post(
        url, data={"marketing": "subscribe", "topics_shown": [str(offers.pk)]}
    )
    assert response.status_code == 200
    assert not ConsentRecord.objects.exists()


def test_the_one_click_unsubscribe_records_its_source_and_the_ip_once(
    live_server, behind_a_proxy, contact, message
):
    url = _url(
        live_server,
        link_urls(contact_id=contact.pk, message_id=message.pk)["unsubscribe_url"],
    )
    # when a mail client posts the RFC 8058 body, twice
    for _ in range(2):
        response = httpx.post(
            url,
            content="List-Unsubscribe=One-Click",
            headers={
                **behind_a_proxy,
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        assert response.status_code == 200
    # then one record says so
    (record,) = ConsentRecord.objects.filter(contact=contact)
    assert (record.source, record.value) == (Source.ONE_CLICK, "unsubscribed")
    assert (record.ip, record.form, record.wording) == (
        "203.0.113.0",
        "unsubscribe link",
        "Unsubscribe",
    )


def test_confirming_a_double_opt_in_records_the_link_the_button_and_the_ip(
    live_server, behind_a_proxy, template
):
    # given a pending contact and the email that asks them to confirm
    pending = Contact.objects.create(
        email="walker@example.com", email_consent=ConsentStatus.PENDING
    )
    message, _ = message_create(contact=pending, template=template, confirmation=True)
    token = make_contact_token(
        contact_id=pending.pk, message_id=message.pk, salt=CONFIRM_SALT
    )
    url = _url(live_server, signed_url("campaigns:confirm", token))
    # when they open the link and press the button
    assert "Yes, subscribe me" in httpx.get(url).text
    assert httpx.post(url, headers=behind_a_proxy).status_code == 200
    # then
    record = ConsentRecord.objects.get(contact=pending)
    assert (record.previous, record.value, record.source) == (
        "pending",
        "subscribed",
        Source.CONFIRMATION,
    )
    assert record.who == f"walker@example.com (link in message #{message.pk})"
    assert (record.ip, record.form, record.wording) == (
        "203.0.113.0",
        "confirmation page (double opt-in)",
        "Yes, subscribe me",
    )


def test_the_topics_endpoint_records_the_context_the_server_passes(
    live_server, server_source, contact, offers
):
    # when the site's server subscribes the person, saying where and how
    response = httpx.post(
        f"{live_server.url}/api/v1/topics/subscriptions",
        json={
            "email": contact.email,
            "topics": {"offers": True},
            "context": {
                "ip": "2001:db8:1234:5678::9",
                "consent": {
                    "form": "checkout",
                    "wording": "Send me offers by email",
                },
            },
        },
        auth=(server_source.key, ""),
    )
    # then
    assert response.status_code == 200, response.text
    record = ConsentRecord.objects.get(contact=contact)
    assert (record.topic, record.previous, record.value) == (
        "offers",
        "unsubscribed",
        "subscribed",
    )
    assert (record.source, record.who, record.ip) == (
        Source.FORM,
        "Backend",
        "2001:db8:1234::",
    )
    assert (record.form, record.wording) == ("checkout", "Send me offers by email")


def test_a_context_of_the_wrong_shape_is_refused_and_records_nothing(
    live_server, server_source, contact, offers
):
    response = httpx.post(
        f"{live_server.url}/api/v1/topics/subscriptions",
        json={
            "email": contact.email,
            "topics": {"offers": True},
            "context": {"consent": {"wording": ["not", "text"]}},
        },
        auth=(server_source.key, ""),
    )
    assert response.status_code == 400
    assert "wording" in response.text
    assert not ConsentRecord.objects.exists()


def test_a_browser_identify_leaving_a_topic_records_the_browser_key_and_its_ip(
    live_server, browser_source, offers, run_jobs
):
    # given a contact subscribed to offers, known by their cookie
    ada = Contact.objects.create(email="ada@example.com")
    Identity.objects.create(contact=ada, anonymous_id="anon-ada")
    ada.topic_subscriptions.create(
        topic=offers, subscribed=True, updated_at=ada.created_at
    )
    # when the site's page sends their choice to leave it
    response = httpx.post(
        f"{live_server.url}/api/v1/identify",
        json={
            "type": "identify",
            "anonymousId": "anon-ada",
            "messageId": str(uuid.uuid4()),
            "traits": {"topics": {"offers": False}},
            "context": {"page": {"url": "https://shop.example.com/account"}},
        },
        auth=(browser_source.key, ""),
    )
    assert response.status_code == 200
    run_jobs()
    # then (the browser's own address, as the API took it)
    record = ConsentRecord.objects.get(contact=ada)
    assert (record.source, record.who, record.value) == (
        Source.API_BROWSER,
        "Web",
        "unsubscribed",
    )
    assert record.ip == "127.0.0.0"
    assert record.form == "https://shop.example.com/account"
    ada.refresh_from_db()
    assert ada.email_consent == ConsentStatus.SUBSCRIBED
