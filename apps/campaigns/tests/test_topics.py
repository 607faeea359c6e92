"""Subscription topics: state and history, who is subscribed, the send-time rule,
the topic's one-click unsubscribe and the preference page."""

from urllib.parse import urlsplit

import pytest
from django.core import signing
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.campaigns.context import link_urls
from apps.campaigns.delivery import SendOutcome, message_send
from apps.campaigns.models import Message, Topic
from apps.campaigns.services import contact_set_consent, message_create
from apps.campaigns.tokens import UNSUBSCRIBE_SALT, make_contact_token
from apps.campaigns.topics import subscribed_to, topic_set, topic_subscribers
from apps.contacts.consent import ConsentProof, Source
from apps.contacts.models import ConsentRecord, ConsentStatus, Contact
from apps.contacts.services import contact_merge
from apps.contacts.suppression import address_suppress

pytestmark = pytest.mark.django_db
TEST_PROOF = ConsentProof(source=Source.SYSTEM, who="test")


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


def _path(url: str) -> str:
    return urlsplit(url).path


# -- state and history ------------------------------------------------------------


def test_a_contact_without_a_choice_has_the_topics_default(contact, newsletter, offers):
    assert subscribed_to(contact, newsletter) is True
    assert subscribed_to(contact, offers) is False


def test_a_change_is_recorded_once_with_its_source_and_a_repeat_adds_nothing(
    contact, offers
):
    # when the contact subscribes twice, then restates the default of another
    assert topic_set(
        contact=contact,
        topic=offers,
        subscribed=True,
        proof=ConsentProof(source=Source.STAFF, who="eve"),
    )
    assert not topic_set(
        contact=contact,
        topic=offers,
        subscribed=True,
        proof=ConsentProof(source=Source.STAFF, who="eve"),
    )
    # then one history row says who
    assert subscribed_to(contact, offers) is True
    (change,) = ConsentRecord.objects.filter(contact=contact)
    assert (change.topic, change.previous, change.value) == (
        "offers",
        "unsubscribed",
        "subscribed",
    )
    assert (change.source, change.who) == ("staff", "eve")


def test_setting_what_the_default_already_gives_writes_nothing(contact, newsletter):
    assert not topic_set(
        contact=contact,
        topic=newsletter,
        subscribed=True,
        proof=ConsentProof(source=Source.PREFERENCES),
    )
    assert not ConsentRecord.objects.exists()


def test_subscribers_of_an_opt_out_topic_are_all_but_those_who_left_in_one_query(
    contact, newsletter, offers
):
    # given three contacts: one left the newsletter, one joined offers
    left = Contact.objects.create(email="left@example.com")
    joined = Contact.objects.create(email="joined@example.com")
    topic_set(
        contact=left,
        topic=newsletter,
        subscribed=False,
        proof=ConsentProof(source=Source.API_SERVER),
    )
    topic_set(
        contact=joined,
        topic=offers,
        subscribed=True,
        proof=ConsentProof(source=Source.API_SERVER),
    )
    # when the audiences are read
    with CaptureQueriesContext(connection) as queries:
        newsletter_ids = set(topic_subscribers(newsletter).values_list("pk", flat=True))
    offers_ids = set(topic_subscribers(offers).values_list("pk", flat=True))
    # then
    assert len(queries) == 1
    assert newsletter_ids == {contact.pk, joined.pk}
    assert offers_ids == {joined.pk}


def test_a_merge_keeps_the_stricter_choice_and_the_history(contact, newsletter):
    other = Contact.objects.create(email="other@example.com")
    topic_set(
        contact=contact,
        topic=newsletter,
        subscribed=False,
        proof=ConsentProof(source=Source.API_SERVER),
    )
    contact_merge(source=contact, target=other, reason="test")
    assert subscribed_to(other, newsletter) is False
    # and the history moved, with what the merge changed for the survivor
    records = ConsentRecord.objects.order_by("pk")
    assert [(r.contact_id, r.source, r.value) for r in records] == [
        (other.pk, "api_server", "unsubscribed"),
        (other.pk, "merge", "unsubscribed"),
    ]


# -- at send time ------------------------------------------------------------------


def test_a_topic_email_to_a_contact_who_left_the_topic_is_not_sent(
    outbox, template, contact, offers
):
    message, _ = message_create(contact=contact, template=template, topic=offers)
    assert message_send(message_id=message.pk) == SendOutcome.SUPPRESSED
    message.refresh_from_db()
    assert message.status == Message.Status.SUPPRESSED
    assert "not subscribed to the topic “Offers”" in message.error
    assert outbox == []


def test_a_topic_subscription_never_overrides_a_global_unsubscribe(
    outbox, template, contact, offers
):
    topic_set(
        contact=contact,
        topic=offers,
        subscribed=True,
        proof=ConsentProof(source=Source.API_SERVER),
    )
    contact_set_consent(
        contact=contact, status="unsubscribed", reason="test", proof=TEST_PROOF
    )
    message, _ = message_create(contact=contact, template=template, topic=offers)
    assert message_send(message_id=message.pk) == SendOutcome.SUPPRESSED
    assert outbox == []


def test_a_transactional_email_goes_without_marketing_consent_but_not_to_a_bounce(
    outbox, template, contact
):
    # given a contact who unsubscribed from marketing
    contact_set_consent(
        contact=contact, status="unsubscribed", reason="test", proof=TEST_PROOF
    )
    receipt, _ = message_create(contact=contact, template=template, transactional=True)
    # then their receipt still goes, as a transactional message
    assert message_send(message_id=receipt.pk) == SendOutcome.SENT
    assert Message.objects.get(pk=receipt.pk).kind == Message.Kind.TRANSACTIONAL
    # but once the address bounced, nothing goes
    address_suppress(email=contact.email, reason="bounced")
    again, _ = message_create(contact=contact, template=template, transactional=True)
    assert message_send(message_id=again.pk) == SendOutcome.SUPPRESSED
    assert len(outbox) == 1


# -- the topic's one-click unsubscribe ---------------------------------------------


def test_a_topic_emails_one_click_leaves_that_topic_only(
    outbox, template, contact, newsletter
):
    # given a newsletter email, sent
    message, _ = message_create(contact=contact, template=template, topic=newsletter)
    assert message_send(message_id=message.pk) == SendOutcome.SENT
    header = outbox[0].extra_headers["List-Unsubscribe"].strip("<>")
    # when the mail client posts the RFC 8058 body
    response = Client(enforce_csrf_checks=True).post(
        _path(header),
        "List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    # then the newsletter is left, marketing email as a whole is not
    assert response.status_code == 200
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.SUBSCRIBED
    assert subscribed_to(contact, newsletter) is False
    change = ConsentRecord.objects.get()
    assert (change.source, change.who) == (
        "one_click",
        f"{contact.email} (link in message #{message.pk})",
    )
    assert change.wording == "Unsubscribe from “Newsletter”"
    assert Message.objects.get(pk=message.pk).unsubscribed_at is not None
    # and the page offers leaving everything
    assert b"Unsubscribe from all marketing email" in response.content


def test_the_footer_offers_the_topic_and_everything_and_a_get_changes_nothing(
    client, contact, newsletter
):
    links = link_urls(contact_id=contact.pk, message_id=None, topic_id=newsletter.pk)
    assert links["unsubscribe_url"] != links["unsubscribe_all_url"]
    assert b"Unsubscribe from" in client.get(_path(links["unsubscribe_url"])).content
    assert subscribed_to(contact, newsletter) is True
    # the other link leaves all marketing email
    client.post(_path(links["unsubscribe_all_url"]))
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.UNSUBSCRIBED


def test_the_topic_is_signed_into_the_token_and_cannot_be_swapped(
    client, contact, newsletter, offers
):
    topic_set(
        contact=contact,
        topic=offers,
        subscribed=True,
        proof=ConsentProof(source=Source.API_SERVER),
    )
    token = make_contact_token(
        contact_id=contact.pk,
        message_id=None,
        salt=UNSUBSCRIBE_SALT,
        topic_id=offers.pk,
    )
    forged = signing.dumps(
        {"c": contact.pk, "m": None, "p": newsletter.pk},
        salt=UNSUBSCRIBE_SALT,
        key="guessed",
    )
    assert client.post(f"/e/u/{forged}/").status_code == 400
    client.post(f"/e/u/{token}/?topic={newsletter.pk}")
    assert subscribed_to(contact, newsletter) is True
    assert subscribed_to(contact, offers) is False


def test_a_message_without_a_topic_keeps_the_global_unsubscribe(client, contact):
    url = link_urls(contact_id=contact.pk, message_id=None)["unsubscribe_url"]
    client.post(_path(url))
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.UNSUBSCRIBED


# -- the preference page ----------------------------------------------------------


def test_the_preference_page_lists_topics_and_saves_them_with_history(
    client, contact, newsletter, offers
):
    hidden = Topic.objects.create(name="Internal", slug="internal", listed=False)
    url = _path(link_urls(contact_id=contact.pk, message_id=None)["preferences_url"])
    # when the page is shown
    page = client.get(url).content.decode()
    assert "Newsletter" in page and "Offers" in page and "Internal" not in page
    # and the person leaves the newsletter, joins offers, and forges the hidden one
    response = client.post(
        url,
        {
            "marketing": "subscribe",
            "topics_shown": [str(newsletter.pk), str(offers.pk), str(hidden.pk)],
            "topic": [str(offers.pk), str(hidden.pk)],
        },
    )
    # then
    assert response.status_code == 200
    assert subscribed_to(contact, newsletter) is False
    assert subscribed_to(contact, offers) is True
    assert subscribed_to(contact, hidden) is False
    sources = set(ConsentRecord.objects.values_list("topic", "source"))
    assert sources == {("newsletter", "preferences"), ("offers", "preferences")}


def test_a_test_links_preference_page_changes_no_topic(client, contact, newsletter):
    url = link_urls(contact_id=contact.pk, message_id=None, is_test=True)
    client.post(_path(url["preferences_url"]), {"topics_shown": [str(newsletter.pk)]})
    assert subscribed_to(contact, newsletter) is True
    assert not ConsentRecord.objects.exists()


# -- admin ---------------------------------------------------------------------------


def test_the_topic_list_counts_subscribers_in_one_query_and_the_contact_shows_topics(
    admin_client, contact, newsletter, offers
):
    # given a second contact who left the newsletter and joined offers
    other = Contact.objects.create(email="other@example.com")
    topic_set(
        contact=other,
        topic=newsletter,
        subscribed=False,
        proof=ConsentProof(source=Source.STAFF),
    )
    topic_set(
        contact=other,
        topic=offers,
        subscribed=True,
        proof=ConsentProof(source=Source.STAFF),
    )
    # when the list is shown
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get("/admin/campaigns/topic/").content.decode()
    # then each count is right: newsletter 1 of 2 (opt-out), offers 1 (opt-in)
    topic_queries = [q for q in queries if 'FROM "campaigns_topic"' in q["sql"]]
    # (the paginator's counts and the rows, with their counts: none per topic)
    assert len(topic_queries) == 3
    assert not [q for q in queries if 'FROM "campaigns_topicsubscription"' in q["sql"]]
    assert '<td class="field-subscribers">1</td>' in page
    # and the contact page lists the contact's topics and its history
    contact_page = admin_client.get(f"/admin/contacts/contact/{other.pk}/change/")
    text = contact_page.content.decode()
    assert 'data-topic="offers"' in text
    assert "topic “newsletter”" in text and "Admin user" in text


def test_the_default_footer_offers_the_topic_and_everything_for_a_topic_email(
    contact, newsletter
):
    from apps.campaigns.delivery import message_render
    from apps.campaigns.models import EmailLayout, EmailTemplate

    # given a template on the default layout as shipped (migrated)
    layout = EmailLayout.objects.get(is_default=True)
    template = EmailTemplate.objects.create(name="News", subject="News", html_body="x")
    assert template.layout is None and "unsubscribe_all_url" in layout.html
    # when a newsletter email and one without a topic are rendered
    news, _ = message_create(contact=contact, template=template, topic=newsletter)
    plain, _ = message_create(contact=contact, template=template)
    # then the first offers both links, the second the one it always had
    assert "Unsubscribe from Newsletter" in message_render(news).html
    assert "Unsubscribe from all" in message_render(news).html
    assert "Unsubscribe from" not in message_render(plain).html


def test_a_topic_listed_after_the_page_was_shown_keeps_its_state(
    client, contact, newsletter
):
    # given the page, shown with the newsletter only
    url = _path(link_urls(contact_id=contact.pk, message_id=None)["preferences_url"])
    client.get(url)
    # and an opt-out topic listed meanwhile (its box was never on the page)
    later = Topic.objects.create(
        name="Later", slug="later", listed=True, default=Topic.Default.OPT_OUT
    )
    # when the person saves the page with the newsletter ticked
    client.post(
        url, {"topics_shown": [str(newsletter.pk)], "topic": [str(newsletter.pk)]}
    )
    # then the new topic is as it was: the person never chose it
    assert subscribed_to(contact, later) is True
    assert not ConsentRecord.objects.filter(topic="later").exists()


@pytest.mark.django_db(transaction=True)
def test_two_first_choices_at_once_are_applied_one_after_the_other(contact, newsletter):
    import threading

    from django.db import connection

    # (each on a connection of its own, as two one-click POSTs would be)
    barrier, errors = threading.Barrier(2), []

    def leave() -> None:
        try:
            barrier.wait()
            topic_set(
                contact=contact,
                topic=newsletter,
                subscribed=False,
                proof=ConsentProof(source=Source.ONE_CLICK),
            )
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=leave) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert subscribed_to(contact, newsletter) is False
    assert ConsentRecord.objects.filter(topic="newsletter").count() == 1


def test_a_topic_with_history_cannot_be_deleted_and_its_slug_and_default_are_fixed(
    admin_client, contact, newsletter
):
    topic_set(
        contact=contact,
        topic=newsletter,
        subscribed=False,
        proof=ConsentProof(source=Source.STAFF),
    )
    page = admin_client.post(
        f"/admin/campaigns/topic/{newsletter.pk}/delete/", {"post": "yes"}
    )
    assert page.status_code == 200  # the "cannot delete: protected" page
    assert Topic.objects.filter(pk=newsletter.pk).exists()
    admin_client.post(
        f"/admin/campaigns/topic/{newsletter.pk}/change/",
        {
            "name": "News",
            "slug": "renamed",
            "default": "opt_in",
            "listed": "on",
            "description": "",
        },
    )
    newsletter.refresh_from_db()
    assert (newsletter.name, newsletter.slug, newsletter.default) == (
        "News",
        "newsletter",
        "opt_out",
    )
