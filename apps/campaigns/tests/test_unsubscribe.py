"""One-click unsubscribe (RFC 8058), the preference page, and signed links."""

import re
from urllib.parse import urlsplit

import pytest
from django.core import signing
from django.test import Client
from django.urls import reverse

from apps.campaigns.context import link_urls
from apps.campaigns.models import Message
from apps.campaigns.services import message_create, message_create_test
from apps.campaigns.tokens import UNSUBSCRIBE_SALT, make_click_token, make_contact_token
from apps.contacts.models import ConsentStatus, Contact, ContactMerge
from apps.contacts.services import contact_merge
from apps.events.models import Event

pytestmark = pytest.mark.django_db


@pytest.fixture
def message(template, contact):
    message, _ = message_create(contact=contact, template=template)
    return message


def _path(url: str) -> str:
    return urlsplit(url).path


def test_the_one_click_post_unsubscribes_at_once_without_cookies_or_csrf(
    message, contact
):
    client = Client(enforce_csrf_checks=True)
    url = _path(
        link_urls(contact_id=contact.pk, message_id=message.pk)["unsubscribe_url"]
    )
    # when a mail client posts the RFC 8058 body
    response = client.post(
        url,
        "List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    # then
    assert response.status_code == 200
    assert not response.cookies
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.UNSUBSCRIBED
    event = Event.objects.get(contact=contact, name="email_unsubscribed")
    assert event.properties["message_id"] == message.pk
    assert Message.objects.get(pk=message.pk).unsubscribed_at is not None


def test_a_get_alone_only_asks_and_unsubscribes_nobody(client, message, contact):
    url = _path(
        link_urls(contact_id=contact.pk, message_id=message.pk)["unsubscribe_url"]
    )
    response = client.get(url)
    assert response.status_code == 200
    assert b"Unsubscribe?" in response.content
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.SUBSCRIBED
    assert not Event.objects.filter(name="email_unsubscribed").exists()


def test_an_altered_or_forged_token_is_refused(client, contact):
    other = Contact.objects.create(email="victim@example.com")
    token = make_contact_token(
        contact_id=contact.pk, message_id=None, salt=UNSUBSCRIBE_SALT
    )
    forged = signing.dumps(
        {"c": other.pk, "m": None}, salt=UNSUBSCRIBE_SALT, key="guessed"
    )
    for bad in [f"x{token}", forged, token[:-2] + "aa"]:
        assert client.post(f"/e/u/{bad}/").status_code == 400
    other.refresh_from_db()
    assert other.email_consent == ConsentStatus.SUBSCRIBED


def test_a_token_made_for_another_purpose_does_not_unsubscribe(client, contact):
    view_token = link_urls(contact_id=contact.pk, message_id=None)[
        "view_in_browser_url"
    ]
    token = view_token.rstrip("/").rsplit("/", 1)[1]
    assert client.post(f"/e/u/{token}/").status_code == 400


def test_links_in_old_emails_survive_a_secret_key_rotation(client, contact, settings):
    old_key = settings.SECRET_KEY
    url = _path(link_urls(contact_id=contact.pk, message_id=None)["unsubscribe_url"])
    settings.SECRET_KEY = "a-brand-new-secret-key-0123456789-abcdefghij"
    settings.SECRET_KEY_FALLBACKS = [old_key]
    assert client.post(url).status_code == 200
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.UNSUBSCRIBED


def test_the_preference_page_unsubscribes_and_resubscribes(client, contact):
    url = _path(link_urls(contact_id=contact.pk, message_id=None)["preferences_url"])
    assert b"Email preferences" in client.get(url).content
    client.post(url, {"marketing": "unsubscribe"})
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.UNSUBSCRIBED
    client.post(url, {"marketing": "subscribe"})
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.SUBSCRIBED
    names = list(
        Event.objects.filter(contact=contact)
        .order_by("pk")
        .values_list("name", flat=True)
    )
    assert names == ["email_unsubscribed", "email_subscribed"]


def test_a_bounced_contact_cannot_resubscribe_themselves(client, contact):
    contact.email_consent = ConsentStatus.BOUNCED
    contact.save()
    url = _path(link_urls(contact_id=contact.pk, message_id=None)["preferences_url"])
    client.post(url, {"marketing": "subscribe"})
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.BOUNCED


def test_a_signed_click_redirects_and_records_the_click(client, message):
    token = make_click_token(
        message_id=message.pk, url="https://shop.example.com/cart?x=1"
    )
    response = client.get(f"/e/c/{token}/")
    assert response.status_code == 302
    assert response["Location"] == "https://shop.example.com/cart?x=1"
    assert Message.objects.get(pk=message.pk).delivery == Message.Delivery.CLICKED
    event = Event.objects.get(name="email_clicked")
    assert event.properties["url"] == "https://shop.example.com/cart?x=1"


def test_a_click_in_a_test_send_records_nothing_on_the_contact_it_shows(
    client, template, contact
):
    # given a test of the template, personalised as a real contact, sent to staff
    test = message_create_test(
        template=template, contact=contact, to_email="marketer@example.com"
    )
    token = make_click_token(message_id=test.pk, url="https://shop.example.com/")
    # when the marketer clicks a link in it
    response = client.get(f"/e/c/{token}/")
    # then they reach the page, and the contact gets no click (which would start
    # workflows, scores and segments for them)
    assert response.status_code == 302
    assert response["Location"] == "https://shop.example.com/"
    assert not Event.objects.filter(name="email_clicked").exists()


def test_an_altered_click_link_is_400_never_an_open_redirect(client, message):
    token = make_click_token(message_id=message.pk, url="https://shop.example.com/")
    tampered = signing.dumps(
        {"m": message.pk, "u": "https://evil.example/"},
        salt="nudge.campaigns.click",
        key="x",
    )
    assert client.get(f"/e/c/{tampered}/").status_code == 400
    assert client.get(f"/e/c/{token[:-3]}abc/").status_code == 400
    assert not Event.objects.filter(name="email_clicked").exists()


def test_view_in_browser_shows_the_message_sandboxed(client, message, contact):
    url = _path(
        link_urls(contact_id=contact.pk, message_id=message.pk)["view_in_browser_url"]
    )
    response = client.get(url)
    assert response.status_code == 200
    assert b"Hello Ada" in response.content
    assert "sandbox" in response["Content-Security-Policy"]


# -- links in test emails change nothing -----------------------------------------------


def test_a_test_emails_unsubscribe_link_says_so_and_changes_nothing(
    outbox, template, contact, run_jobs
):
    # given a test of the template, personalised as a real contact
    message_create_test(template=template, contact=contact, to_email="me@example.com")
    run_jobs()
    [email] = outbox
    one_click = _path(email.extra_headers["List-Unsubscribe"].strip("<>"))
    footer = _path(re.search(r'href="([^"]*/e/u/[^"]*)"', email.alternatives[0][0])[1])
    client = Client(enforce_csrf_checks=True)
    # when the marketer clicks "Unsubscribe", and their mail client one-clicks
    page = client.get(footer)
    posted = client.post(
        one_click,
        "List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    preferences = client.post(footer + "preferences/", {"marketing": "unsubscribe"})
    # then the pages say it was a test, the POSTs are refused, and nothing changed
    assert page.status_code == 200 and b"from a test email" in page.content
    assert posted.status_code == 400 and b"from a test email" in posted.content
    assert preferences.status_code == 400
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.SUBSCRIBED
    assert not Event.objects.filter(name="email_unsubscribed").exists()


def test_links_in_the_template_preview_are_test_links(admin_client, template, contact):
    response = admin_client.post(
        reverse("admin:campaigns_emailtemplate_preview"),
        {
            "contact": contact.pk,
            "subject": "Hi",
            "html_body": '<a href="{{ unsubscribe_url }}">u</a>',
        },
    )
    url = _path(re.search(r'href="([^"]*/e/u/[^"]*)"', response.json()["html"])[1])

    assert Client().post(url).status_code == 400
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.SUBSCRIBED


# -- links follow merges ------------------------------------------------------------


def test_an_unsubscribe_link_still_works_after_its_contact_was_merged(
    client, message, contact
):
    # given an email to Ada, then Ada merged into another contact
    url = _path(
        link_urls(contact_id=contact.pk, message_id=message.pk)["unsubscribe_url"]
    )
    survivor = Contact.objects.create(external_id="u-9")
    contact_merge(source=contact, target=survivor, reason="identify")
    # when the link in the old email is used
    response = client.post(url)
    # then the contact that holds Ada now is unsubscribed, from that message
    assert response.status_code == 200
    survivor.refresh_from_db()
    assert survivor.email_consent == ConsentStatus.UNSUBSCRIBED
    assert Message.objects.get(pk=message.pk).unsubscribed_at is not None


def test_merge_records_survive_later_merges_and_links_follow_the_chain(client, contact):
    # given Ada merged into B, then B merged into C
    url = _path(link_urls(contact_id=contact.pk, message_id=None)["unsubscribe_url"])
    b = Contact.objects.create(external_id="b")
    c = Contact.objects.create(external_id="c")
    contact_merge(source=contact, target=b, reason="identify")
    contact_merge(source=b, target=c, reason="alias")
    # then both records remain, leading to C
    assert set(ContactMerge.objects.values_list("merged_contact_id", "into_id")) == {
        (contact.pk, c.pk),
        (b.pk, c.pk),
    }
    # and Ada's old link unsubscribes C
    assert client.post(url).status_code == 200
    c.refresh_from_db()
    assert c.email_consent == ConsentStatus.UNSUBSCRIBED
