"""Proof of consent in admin: staff changes recorded with their name, IP and reason;
the contact page's Consent history; who may read it and who may change consent."""

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from apps.contacts.consent import ConsentProof, Source, contact_consent_change
from apps.contacts.models import ConsentRecord, ConsentStatus, Contact
from apps.core import clock
from apps.core.roles import roles_sync

pytestmark = pytest.mark.django_db


def user_with_role(role: str) -> Client:
    from django.apps import apps

    roles_sync(apps)
    user = User.objects.create_user(f"{role.lower()}-user", password="pw")
    user.is_staff = True
    user.save()
    user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client


def contact_page(contact: Contact) -> str:
    return reverse("admin:contacts_contact_change", args=[contact.pk])


def test_staff_changing_consent_is_recorded_with_their_name_ip_and_reason(
    admin_client, admin_user, contact
):
    # given a bounced contact
    contact_consent_change(
        contact_id=contact.pk,
        status=ConsentStatus.BOUNCED,
        proof=ConsentProof(source=Source.ESP, who="Postmark"),
    )
    # when staff lift it on the consent page, saying why
    response = admin_client.post(
        reverse("admin:campaigns_contact_consent", args=[contact.pk]),
        {"status": "subscribed", "reason": "mailbox fixed, confirmed by phone"},
        REMOTE_ADDR="198.51.100.23",
    )
    # then
    assert response.status_code == 302
    record = ConsentRecord.objects.filter(contact=contact).first()  # the newest
    assert (record.previous, record.value) == ("bounced", "subscribed")
    assert (record.source, record.who) == (Source.STAFF, admin_user.username)
    assert record.ip == "198.51.100.0"
    assert record.form == "admin: change email consent"
    assert record.wording == "mailbox fixed, confirmed by phone"


def test_staff_choosing_the_consent_in_effect_records_nothing(admin_client, contact):
    admin_client.post(
        reverse("admin:campaigns_contact_consent", args=[contact.pk]),
        {"status": "subscribed", "reason": ""},
    )
    assert not ConsentRecord.objects.exists()


def test_a_contact_added_in_admin_records_the_consent_it_was_added_with(
    admin_client, admin_user
):
    response = admin_client.post(
        reverse("admin:contacts_contact_add"),
        {
            "email": "new@example.com",
            "email_consent": "unsubscribed",
            "score": "0",
            "attributes": "{}",
            "identities-TOTAL_FORMS": "0",
            "identities-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    contact = Contact.objects.get(email="new@example.com")
    (record,) = ConsentRecord.objects.filter(contact=contact)
    assert (record.previous, record.value) == ("", "unsubscribed")
    assert (record.source, record.who) == (Source.STAFF, admin_user.username)
    assert record.form == "admin: add contact"


def test_the_contact_page_shows_the_history_readably(admin_client, contact):
    # given two changes: the email consent and a topic
    contact_consent_change(
        contact_id=contact.pk,
        status=ConsentStatus.UNSUBSCRIBED,
        proof=ConsentProof(
            source=Source.PREFERENCES,
            who="ada@example.com (link in message #7)",
            ip="203.0.113.77",
            form="preference page",
            wording="Unsubscribe me from all marketing email",
        ),
    )
    ConsentRecord.objects.create(
        contact=contact,
        topic="offers",
        previous="unsubscribed",
        value="subscribed",
        source=Source.API_SERVER,
        who="Backend",
        at=clock.now(),
    )
    # when the contact page is shown
    page = admin_client.get(contact_page(contact)).content.decode()
    # then the panel lists both: what, from -> to, source, who, IP, wording
    assert 'id="panel-consent_history"' in page
    assert "email consent" in page and "topic “offers”" in page
    assert "subscribed → <strong>unsubscribed</strong>" in page
    assert "Preference page" in page and "API (server key)" in page
    assert "ada@example.com (link in message #7)" in page
    assert "203.0.113.0" in page and "203.0.113.77" not in page
    assert "“Unsubscribe me from all marketing email”" in page


def test_the_history_escapes_what_callers_sent(admin_client, contact):
    contact_consent_change(
        contact_id=contact.pk,
        status=ConsentStatus.UNSUBSCRIBED,
        proof=ConsentProof(source=Source.FORM, wording="<script>alert(1)</script>"),
    )
    page = admin_client.get(contact_page(contact)).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_marketer_reads_the_history_but_cannot_change_consent(contact):
    # given a change recorded, and a Marketer (reads contacts, edits no consent)
    contact_consent_change(
        contact_id=contact.pk,
        status=ConsentStatus.UNSUBSCRIBED,
        proof=ConsentProof(source=Source.ONE_CLICK, who="ada@example.com (link)"),
    )
    marketer = user_with_role("Marketer")
    # when they open the contact and the history list
    page = marketer.get(contact_page(contact)).content.decode()
    listing = marketer.get(reverse("admin:contacts_consentrecord_changelist"))
    # then they see it, and no way to change it
    assert "One-click unsubscribe" in page
    assert "Change email consent" not in page
    assert listing.status_code == 200 and b"ada@example.com (link)" in listing.content
    record = ConsentRecord.objects.get()
    for url in (
        reverse("admin:campaigns_contact_consent", args=[contact.pk]),
        reverse("admin:contacts_consentrecord_delete", args=[record.pk]),
    ):
        assert marketer.get(url).status_code == 403
        assert marketer.post(url, {"status": "subscribed"}).status_code == 403
    contact.refresh_from_db()
    assert contact.email_consent == ConsentStatus.UNSUBSCRIBED
    assert ConsentRecord.objects.count() == 1


def test_a_viewer_who_sees_no_contact_sees_no_consent_history(contact):
    # (Viewers read workflows, segments and templates: nothing naming a person)
    contact_consent_change(
        contact_id=contact.pk,
        status=ConsentStatus.UNSUBSCRIBED,
        proof=ConsentProof(source=Source.STAFF, who="eve"),
    )
    viewer = user_with_role("Viewer")
    for url in (
        contact_page(contact),
        reverse("admin:contacts_consentrecord_changelist"),
        reverse("admin:campaigns_contact_consent", args=[contact.pk]),
    ):
        assert viewer.get(url).status_code == 403


def test_without_the_history_permission_the_panel_says_so(contact):
    contact_consent_change(
        contact_id=contact.pk,
        status=ConsentStatus.UNSUBSCRIBED,
        proof=ConsentProof(source=Source.STAFF, who="eve-the-secret"),
    )
    from django.contrib.auth.models import Permission

    user = User.objects.create_user("reader", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_contact"))
    client = Client()
    client.force_login(user)
    page = client.get(contact_page(contact)).content.decode()
    assert "You may not see this contact's consent history." in page
    assert "eve-the-secret" not in page


def test_a_long_history_shows_the_latest_and_links_to_all_of_it(admin_client, contact):
    # given more changes than the panel shows, and another contact's
    other = Contact.objects.create(email="other@example.com")
    for n in range(52):
        for who in (contact, other):
            ConsentRecord.objects.create(
                contact=who,
                topic=f"topic-{n}",
                previous="unsubscribed",
                value="subscribed",
                source=Source.IMPORT,
                at=clock.now(),
            )
    # when the page is shown
    page = admin_client.get(contact_page(contact)).content.decode()
    # then it shows the latest and links to the list of this contact's
    assert page.count("data-record=") == 50
    link = reverse("admin:contacts_consentrecord_changelist")
    link += f"?contact__id__exact={contact.pk}"
    assert link in page
    listing = admin_client.get(link)
    assert listing.status_code == 200
    assert b"52 consent records" in listing.content
