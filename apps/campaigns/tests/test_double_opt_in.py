"""Double opt-in: a double opt-in source's new people are pending, get one email
asking them to confirm and nothing else, become subscribed by its link, and are
deleted if they never confirm."""

import datetime as dt
import re
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from apps.campaigns.models import EmailTemplate, Message
from apps.campaigns.optin import confirmation_send
from apps.campaigns.services import message_create
from apps.contacts.models import ConsentStatus, Contact
from apps.contacts.services import contact_merge
from apps.core import clock
from apps.events.models import Event

pytestmark = pytest.mark.django_db(transaction=True)

START = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
EMAIL = "walker@example.com"


@pytest.fixture
def frozen_clock():
    with clock.frozen(START):
        yield START


@pytest.fixture
def shop(live_server, browser_source, frozen_clock, outbox, layout):
    browser_source.double_opt_in = True
    browser_source.save()

    class Shop:
        client = httpx.Client(
            base_url=f"{live_server.url}/api/v1", auth=(browser_source.key, "")
        )

        def call(self, path: str, **body):
            body.setdefault("messageId", str(uuid.uuid4()))
            response = self.client.post(path, json=body)
            assert response.status_code == 200, response.text

    yield Shop()
    Shop.client.close()


def confirm_path(message) -> str:
    found = re.search(r"https?://[^/\s\"]+(/e/confirm/[^\s\"<)]+)", message.body)
    if found is None:
        html = message.alternatives[0].content if message.alternatives else ""
        found = re.search(r"https?://[^/\s\"]+(/e/confirm/[^\s\"<)]+)", html)
    assert found, message.body
    return found.group(1)


def test_a_sign_up_is_pending_and_gets_one_confirmation_and_no_marketing(
    shop, outbox, run_jobs, newsletter_template
):
    # given: a visitor browses, then signs up in the newsletter box (a browser key)
    shop.call("/page", anonymousId="a-1", name="Home")
    shop.call("/identify", anonymousId="a-1", traits={"email": EMAIL})
    shop.call("/identify", anonymousId="a-1", traits={"email": EMAIL})
    run_jobs()
    contact = Contact.objects.get(email=EMAIL)
    # when: a marketing email is queued for them meanwhile
    message_create(contact=contact, template=newsletter_template)
    run_jobs()
    # then: pending, one confirmation email (identified twice), the newsletter held
    assert contact.email_consent == ConsentStatus.PENDING
    assert [m.to for m in outbox] == [[EMAIL]]
    assert outbox[0].subject == "Please confirm your subscription"
    newsletter = Message.objects.get(template=newsletter_template)
    assert newsletter.status == Message.Status.SUPPRESSED


def test_the_link_asks_first_and_the_button_subscribes_with_an_event(
    shop, outbox, run_jobs, client
):
    # given
    shop.call("/identify", anonymousId="a-2", traits={"email": EMAIL})
    run_jobs()
    path = confirm_path(outbox[0])
    # when: the link is opened (a person, or a mail scanner)
    page = client.get(path)
    # then: it only asks
    assert page.status_code == 200
    assert b"Yes, subscribe me" in page.content
    assert Contact.objects.get(email=EMAIL).email_consent == ConsentStatus.PENDING
    # when: the button
    done = client.post(path)
    # then
    assert b"You are subscribed" in done.content
    contact = Contact.objects.get(email=EMAIL)
    assert contact.email_consent == ConsentStatus.SUBSCRIBED
    subscribed = Event.objects.get(contact=contact, name="email_subscribed")
    assert "double opt-in" in subscribed.properties["reason"]
    assert subscribed.properties["message_id"] == Message.objects.get().pk
    # and the link again changes nothing
    assert b"You are subscribed" in client.post(path).content


def test_an_altered_link_is_refused(shop, outbox, run_jobs, client):
    shop.call("/identify", anonymousId="a-3", traits={"email": EMAIL})
    run_jobs()
    path = confirm_path(outbox[0])
    tampered = path[:-3] + ("x" if path[-3] != "x" else "y") + path[-2:]
    assert client.post(tampered).status_code == 400
    assert Contact.objects.get(email=EMAIL).email_consent == ConsentStatus.PENDING


def test_a_link_older_than_the_purge_days_has_expired(
    shop, outbox, run_jobs, client, settings
):
    # given: a confirmation email, and the days it is valid for
    settings.NUDGE_DOUBLE_OPT_IN_PURGE_DAYS = 30
    shop.call("/identify", anonymousId="a-5", traits={"email": EMAIL})
    run_jobs()
    path = confirm_path(outbox[0])
    # when: the person finds it after 30 days and a minute
    with clock.frozen(START + dt.timedelta(days=30, minutes=1)):
        page = client.get(path)
        pressed = client.post(path)
    # then: it says so and confirms nothing
    assert page.status_code == pressed.status_code == 410
    assert b"This link has expired" in pressed.content
    assert Contact.objects.get(email=EMAIL).email_consent == ConsentStatus.PENDING
    # and the day before, it still confirmed
    with clock.frozen(START + dt.timedelta(days=29, hours=23)):
        assert b"You are subscribed" in client.post(path).content


def test_a_link_confirms_only_the_address_it_was_sent_to(
    shop, outbox, run_jobs, client
):
    # given: a confirmation sent to one address; the contact's address changed since
    shop.call("/identify", anonymousId="a-6", traits={"email": EMAIL})
    run_jobs()
    path = confirm_path(outbox[0])
    Contact.objects.filter(email=EMAIL).update(email="someone.else@example.com")
    # when
    pressed = client.post(path)
    # then: the new address is not confirmed by the old one's link
    assert pressed.status_code == 410
    assert b"another address" in pressed.content
    contact = Contact.objects.get(email="someone.else@example.com")
    assert contact.email_consent == ConsentStatus.PENDING
    # and when the shop identifies them again (within the day), the new address
    # gets a link of its own, which confirms it
    shop.call(
        "/identify", anonymousId="a-6", traits={"email": "someone.else@example.com"}
    )
    run_jobs()
    assert [m.to for m in outbox] == [[EMAIL], ["someone.else@example.com"]]
    assert b"You are subscribed" in client.post(confirm_path(outbox[1])).content


def test_a_confirmation_queued_before_the_person_confirmed_is_not_sent(
    shop, outbox, run_jobs
):
    # given: pending, a confirmation queued but not yet sent
    shop.call("/page", anonymousId="a-4", name="Home")
    run_jobs()
    contact = Contact.objects.get()
    Contact.objects.filter(pk=contact.pk).update(email=EMAIL)
    message = confirmation_send(contact_id=contact.pk)
    # when: they confirm by another way first (the API, say) and then it runs
    Contact.objects.filter(pk=contact.pk).update(email_consent=ConsentStatus.SUBSCRIBED)
    run_jobs()
    # then
    message.refresh_from_db()
    assert message.status == Message.Status.SUPPRESSED
    assert outbox == []


def test_the_unconfirmed_are_deleted_after_the_configured_days(
    shop, outbox, run_jobs, settle, settings, client
):
    # given: two sign-ups; one confirms
    settings.NUDGE_DOUBLE_OPT_IN_PURGE_DAYS = 30
    shop.call("/identify", anonymousId="a-5", traits={"email": "stays@example.com"})
    shop.call("/identify", anonymousId="a-6", traits={"email": "goes@example.com"})
    run_jobs()
    to_confirm = next(m for m in outbox if m.to == ["stays@example.com"])
    client.post(confirm_path(to_confirm))
    # when: 29 days pass, then two more
    clock.advance(dt.timedelta(days=29))
    settle()
    assert Contact.objects.filter(email="goes@example.com").exists()
    clock.advance(dt.timedelta(days=2))
    settle()  # (the daily retention run)
    # then
    assert not Contact.objects.filter(email="goes@example.com").exists()
    assert Contact.objects.filter(email="stays@example.com").exists()


def test_a_pending_visitor_merged_into_a_subscribed_customer_keeps_them_subscribed(
    frozen_clock,
):
    # given: a double opt-in source's anonymous visitor, and a known customer
    visitor = Contact.objects.create(email_consent=ConsentStatus.PENDING)
    customer = Contact.objects.create(email="c@example.com", external_id="u-1")
    # when: they log in (the visitor is folded into the customer)
    contact_merge(source=visitor, target=customer, reason="identify")
    # then
    customer.refresh_from_db()
    assert customer.email_consent == ConsentStatus.SUBSCRIBED


def test_a_source_without_double_opt_in_subscribes_as_before(
    live_server, server_source, frozen_clock, outbox, run_jobs
):
    response = httpx.post(
        f"{live_server.url}/api/v1/identify",
        auth=(server_source.key, ""),
        json={"userId": "u-9", "traits": {"email": EMAIL}},
    )
    assert response.status_code == 200
    run_jobs()
    assert Contact.objects.get(email=EMAIL).email_consent == ConsentStatus.SUBSCRIBED
    assert outbox == []
    assert not EmailTemplate.objects.filter(name="Confirm your subscription").exists()


def test_only_a_confirmation_emails_own_link_confirms(
    frozen_clock, outbox, newsletter_template, client
):
    from apps.campaigns.context import signed_url
    from apps.campaigns.tokens import CONFIRM_SALT, make_contact_token

    # given: a pending contact, and a confirm token minted for another email of theirs
    pending = Contact.objects.create(email=EMAIL, email_consent=ConsentStatus.PENDING)
    other, _ = message_create(contact=pending, template=newsletter_template)
    token = make_contact_token(
        contact_id=pending.pk, message_id=other.pk, salt=CONFIRM_SALT
    )
    # when
    response = client.post(urlsplit(signed_url("campaigns:confirm", token)).path)
    # then
    assert response.status_code == 400
    pending.refresh_from_db()
    assert pending.email_consent == ConsentStatus.PENDING
