"""Consent has a precedence (bounced and complained outrank unsubscribed; only staff
with a reason lift them), and the address suppression list outlives contacts and is
checked at send time on every path."""

from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from apps.campaigns.context import link_urls
from apps.campaigns.delivery import SendOutcome, message_send
from apps.campaigns.models import Message
from apps.campaigns.services import (
    contact_set_consent,
    contact_unsubscribe,
    message_create,
    message_create_test,
)
from apps.contacts.consent import ConsentProof, Source
from apps.contacts.models import ConsentStatus, Contact, SuppressedAddress
from apps.contacts.services import contact_merge
from apps.contacts.suppression import address_suppress, address_suppression

pytestmark = pytest.mark.django_db
# Where these tests' consent changes come from, for their records.
TEST_PROOF = ConsentProof(source=Source.SYSTEM, who="test")
C = ConsentStatus


def links(contact: Contact, message: Message | None = None) -> dict[str, str]:
    urls = link_urls(contact_id=contact.pk, message_id=message.pk if message else None)
    return {name: urlsplit(url).path for name, url in urls.items()}


def bounce(contact: Contact) -> None:
    contact_set_consent(
        contact=contact, status=C.BOUNCED, reason="Postmark bounced", proof=TEST_PROOF
    )


# -- precedence -----------------------------------------------------------------------


def test_an_unsubscribe_after_a_hard_bounce_leaves_the_contact_bounced(client, contact):
    # given
    bounce(contact)
    # when the person then uses the unsubscribe link
    client.post(
        links(contact)["unsubscribe_url"],
        "List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    # then the bounce stands, on the contact and on the address list
    contact.refresh_from_db()
    assert contact.email_consent == C.BOUNCED
    assert address_suppression(contact.email).reason == SuppressedAddress.Reason.BOUNCED


@pytest.mark.parametrize("status", [C.BOUNCED, C.COMPLAINED])
def test_the_preference_page_cannot_undo_a_bounce_or_a_complaint(
    client, contact, status
):
    # given a bounced (or complained) contact who unsubscribed too
    contact_set_consent(
        contact=contact, status=status, reason="the ESP said so", proof=TEST_PROOF
    )
    contact_unsubscribe(contact=contact, reason="unsubscribe link", proof=TEST_PROOF)
    url = links(contact)["preferences_url"]
    # when they ask to be subscribed again
    page = client.get(url)
    client.post(url, {"marketing": "subscribe"})
    # then the page offers no resubscribe and nothing changed
    assert b'value="subscribe"' not in page.content
    contact.refresh_from_db()
    assert contact.email_consent == status
    assert address_suppression(contact.email) is not None


def test_a_person_may_undo_their_own_unsubscribe(client, contact):
    contact_unsubscribe(contact=contact, reason="unsubscribe link", proof=TEST_PROOF)
    assert address_suppression(contact.email).reason == "unsubscribed"

    client.post(links(contact)["preferences_url"], {"marketing": "subscribe"})

    contact.refresh_from_db()
    assert contact.email_consent == C.SUBSCRIBED
    assert address_suppression(contact.email) is None


def test_lifting_a_bounce_needs_a_reason(contact):
    bounce(contact)

    with pytest.raises(ValueError, match="reason"):
        contact_set_consent(
            contact=contact,
            status=C.SUBSCRIBED,
            reason=" ",
            proof=TEST_PROOF,
            lift=True,
        )
    assert not contact_set_consent(
        contact=contact, status=C.SUBSCRIBED, reason="server", proof=TEST_PROOF
    )
    assert contact_set_consent(
        contact=contact,
        status=C.SUBSCRIBED,
        reason="mailbox fixed, confirmed by phone",
        proof=TEST_PROOF,
        lift=True,
    )
    assert address_suppression(contact.email) is None


def test_a_merge_keeps_the_stricter_consent(contact):
    other = Contact.objects.create(external_id="u-1")
    bounce(contact)

    contact_merge(source=contact, target=other, reason="test")

    other.refresh_from_db()
    assert other.email_consent == C.BOUNCED


# -- the address list at send time ---------------------------------------------------


def test_a_bounced_address_gets_nothing_after_its_contact_is_deleted_and_re_created(
    outbox, template, contact
):
    # given a bounce, then the contact deleted
    bounce(contact)
    contact.delete()
    # when the address comes back as a new, subscribed contact (other case)
    again = Contact.objects.create(email="ADA@example.com")
    message, _ = message_create(contact=again, template=template)
    # then the send is refused at send time
    assert message_send(message_id=message.pk) == SendOutcome.SUPPRESSED
    message.refresh_from_db()
    assert "suppression list (hard bounce)" in message.error
    assert outbox == []


def test_a_test_send_to_a_suppressed_address_is_refused(outbox, template, contact):
    contact_set_consent(
        contact=contact, status=C.COMPLAINED, reason="spam report", proof=TEST_PROOF
    )
    # a test personalised as anyone, but sent to the complained address
    test = message_create_test(
        template=template, contact=Contact.objects.create(), to_email="ada@example.com"
    )

    assert message_send(message_id=test.pk) == SendOutcome.SUPPRESSED
    assert outbox == []


# -- admin ------------------------------------------------------------------------------


def staff(*perms: str) -> Client:
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


def test_staff_lift_a_bounce_on_the_consent_page_only_with_a_reason(contact):
    bounce(contact)
    client = staff("contacts.change_contact", "contacts.view_contact")
    url = reverse("admin:campaigns_contact_consent", args=[contact.pk])
    # without a reason: the form says why, nothing changes
    refused = client.post(url, {"status": C.SUBSCRIBED, "reason": ""})
    assert refused.status_code == 200
    assert b"Say why" in refused.content
    contact.refresh_from_db()
    assert contact.email_consent == C.BOUNCED
    # with one: lifted, off the list, and the reason recorded on the contact's event
    client.post(url, {"status": C.SUBSCRIBED, "reason": "new mailbox, per support"})
    contact.refresh_from_db()
    assert contact.email_consent == C.SUBSCRIBED
    assert address_suppression(contact.email) is None
    event = contact.events.get(name="email_subscribed")
    assert "new mailbox, per support" in event.properties["reason"]


def test_staff_resubscribing_lifts_no_more_than_the_contacts_own_status(contact):
    # given an unsubscribed contact whose address also carries a complaint (from an
    # earlier contact with the address, since erased)
    contact_set_consent(
        contact=contact, status=C.UNSUBSCRIBED, reason="footer link", proof=TEST_PROOF
    )
    address_suppress(email=contact.email, reason="complained", detail="old contact")
    client = staff("contacts.change_contact", "contacts.view_contact")
    url = reverse("admin:campaigns_contact_consent", args=[contact.pk])
    # when staff resubscribe the contact, who asked
    client.post(url, {"status": C.SUBSCRIBED, "reason": "asked by phone"})
    # then the contact is subscribed, and the complaint still holds for the address
    contact.refresh_from_db()
    assert contact.email_consent == C.SUBSCRIBED
    assert address_suppression(contact.email).reason == "complained"


def test_the_consent_page_needs_the_change_contact_permission(contact):
    client = staff("contacts.view_contact")

    response = client.get(reverse("admin:campaigns_contact_consent", args=[contact.pk]))

    assert response.status_code == 403


def test_the_contact_form_cannot_edit_consent(admin_client, contact):
    bounce(contact)
    url = reverse("admin:contacts_contact_change", args=[contact.pk])
    page = admin_client.get(url)
    form = page.context["adminform"].form
    data = {
        name: form.initial.get(name) or ""
        for name in form.fields
        if name != "attributes"
    }
    data.update(email_consent=C.SUBSCRIBED, attributes="{}", score=0)
    data.update({"identities-TOTAL_FORMS": 0, "identities-INITIAL_FORMS": 0})

    admin_client.post(url, data)

    contact.refresh_from_db()
    assert contact.email_consent == C.BOUNCED
    assert b"Change email consent" in page.content


def test_a_contact_added_in_admin_as_unsubscribed_puts_its_address_on_the_list(
    admin_client,
):
    data = {
        "email": "gone@example.com",
        "email_consent": C.UNSUBSCRIBED,
        "attributes": "{}",
        "score": 0,
        "identities-TOTAL_FORMS": 0,
        "identities-INITIAL_FORMS": 0,
    }
    page = admin_client.post(reverse("admin:contacts_contact_add"), data)
    assert page.status_code == 302, page.context["adminform"].form.errors
    assert address_suppression("gone@example.com").reason == "unsubscribed"
    # and a contact added as subscribed lifts nothing
    data.update(email="gone@example.com", email_consent=C.SUBSCRIBED)
    Contact.objects.filter(email="gone@example.com").delete()
    admin_client.post(reverse("admin:contacts_contact_add"), data)
    assert Contact.objects.get(email="gone@example.com").email_consent == "subscribed"
    assert address_suppression("gone@example.com").reason == "unsubscribed"


def test_the_suppression_list_is_kept_and_searched_by_address_in_admin(admin_client):
    add = reverse("admin:contacts_suppressedaddress_add")
    admin_client.post(
        add, {"email": "Blocked@Example.com", "reason": "manual", "detail": "asked"}
    )
    entry = address_suppression("blocked@example.com")
    assert entry.reason == SuppressedAddress.Reason.MANUAL
    assert "blocked" not in entry.hint  # only a hint of the address is kept
    listing = admin_client.get(
        reverse("admin:contacts_suppressedaddress_changelist"),
        {"q": "blocked@example.com"},
    )
    assert list(listing.context["cl"].result_list) == [entry]
    admin_client.post(
        reverse("admin:contacts_suppressedaddress_changelist"),
        {"action": "lift", "_selected_action": [entry.pk]},
    )
    assert address_suppression("blocked@example.com") is None


def test_lifting_from_the_list_needs_the_delete_permission():
    from apps.contacts.suppression import address_suppress

    address_suppress(email="x@example.com", reason=SuppressedAddress.Reason.BOUNCED)
    entry = address_suppression("x@example.com")
    client = staff("contacts.view_suppressedaddress")

    client.post(
        reverse("admin:contacts_suppressedaddress_changelist"),
        {"action": "lift", "_selected_action": [entry.pk]},
    )

    assert address_suppression("x@example.com") is not None
