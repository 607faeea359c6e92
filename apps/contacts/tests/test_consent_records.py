"""Proof of consent on the contacts side: an identify's consent trait over real HTTP
(the key, the IP, the form and the wording it carried), a new contact's consent, a
merge, the IP's anonymisation, and nothing recorded when nothing changed."""

import uuid

import httpx
import pytest

from apps.contacts.consent import (
    ConsentProof,
    Source,
    consent_record,
    contact_consent_change,
)
from apps.contacts.models import ConsentRecord, ConsentStatus, Contact
from apps.contacts.services import contact_merge

pytestmark = pytest.mark.django_db(transaction=True)

FORM_CONTEXT = {
    "ip": "203.0.113.77",
    "page": {"url": "https://shop.example.com/newsletter"},
    "consent": {
        "form": "footer-signup",
        "wording": "Yes, send me the weekly newsletter. Unsubscribe at any time.",
    },
}


def identify(live_server, source, *, context=None, **traits) -> httpx.Response:
    body = {
        "type": "identify",
        "userId": "u-1",
        "messageId": str(uuid.uuid4()),
        "traits": {"email": "ada@example.com", **traits},
    }
    if context is not None:
        body["context"] = context
    return httpx.post(
        f"{live_server.url}/api/v1/identify", json=body, auth=(source.key, "")
    )


@pytest.fixture
def ada(db):
    return Contact.objects.create(email="ada@example.com", external_id="u-1")


def test_a_server_identify_records_the_consent_with_its_key_ip_form_and_wording(
    live_server, server_source, ada
):
    # when the site's server relays a form's unsubscribe, naming the form
    response = identify(
        live_server, server_source, email_consent="unsubscribed", context=FORM_CONTEXT
    )
    # then
    assert response.status_code == 200, response.text
    (record,) = ConsentRecord.objects.filter(contact=ada)
    assert (record.topic, record.previous, record.value) == (
        "",
        "subscribed",
        "unsubscribed",
    )
    assert (record.source, record.who) == (Source.FORM, "Backend")
    assert record.ip == "203.0.113.0"  # anonymised
    assert record.form == "footer-signup"
    assert record.wording == FORM_CONTEXT["consent"]["wording"]


def test_a_server_identify_without_a_form_is_the_api_s_with_the_page_it_names(
    live_server, server_source, ada
):
    context = {"page": {"url": "https://shop.example.com/account"}}
    identify(live_server, server_source, email_consent="unsubscribed", context=context)
    record = ConsentRecord.objects.get(contact=ada)
    assert record.source == Source.API_SERVER
    assert record.form == "https://shop.example.com/account"
    assert (record.ip, record.wording) == (None, "")


def test_a_new_contact_identified_with_a_consent_records_it_from_nothing(
    live_server, server_source
):
    # when a first identify gives the default consent explicitly
    response = identify(
        live_server, server_source, email_consent="subscribed", context=FORM_CONTEXT
    )
    assert response.status_code == 200
    # then it is recorded: given, not assumed
    contact = Contact.objects.get(email="ada@example.com")
    (record,) = ConsentRecord.objects.filter(contact=contact)
    assert (record.previous, record.value, record.source) == (
        "",
        "subscribed",
        Source.FORM,
    )


def test_a_new_contact_without_a_consent_trait_has_no_record(
    live_server, server_source
):
    identify(live_server, server_source, firstName="Ada")
    assert Contact.objects.filter(email="ada@example.com").exists()
    assert not ConsentRecord.objects.exists()


def test_an_identify_repeating_the_consent_in_effect_records_nothing(
    live_server, server_source, ada
):
    identify(live_server, server_source, email_consent="subscribed")
    identify(live_server, server_source, email_consent="unsubscribed")
    identify(live_server, server_source, email_consent="unsubscribed")
    assert ConsentRecord.objects.filter(contact=ada).count() == 1


def test_a_browser_key_changes_no_consent_and_so_records_none(
    live_server, browser_source, ada
):
    identify(live_server, browser_source, email_consent="unsubscribed")
    ada.refresh_from_db()
    assert ada.email_consent == ConsentStatus.SUBSCRIBED
    assert not ConsentRecord.objects.exists()


def test_a_trait_that_may_not_lower_a_bounce_records_nothing(
    live_server, server_source, ada
):
    Contact.objects.filter(pk=ada.pk).update(email_consent=ConsentStatus.BOUNCED)
    identify(live_server, server_source, email_consent="subscribed")
    ada.refresh_from_db()
    assert ada.email_consent == ConsentStatus.BOUNCED
    assert not ConsentRecord.objects.exists()


# -- the record itself --------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "anonymise", "kept"),
    [
        ("198.51.100.23", True, "198.51.100.0"),
        ("2001:db8:1234:5678::1", True, "2001:db8:1234::"),
        ("::ffff:198.51.100.23", True, "198.51.100.0"),
        ("198.51.100.23", False, "198.51.100.23"),
        ("not an address", True, None),
    ],
)
def test_the_ip_is_anonymised_unless_the_setting_is_off(
    settings, ada, given, anonymise, kept
):
    # given
    settings.NUDGE_ANONYMISE_IP = anonymise
    # when
    contact_consent_change(
        contact_id=ada.pk,
        status=ConsentStatus.UNSUBSCRIBED,
        proof=ConsentProof(source=Source.STAFF, who="eve", ip=given),
    )
    # then
    assert ConsentRecord.objects.get().ip == kept


def test_nothing_is_recorded_when_nothing_changed(ada):
    assert (
        consent_record(
            contact_id=ada.pk,
            previous="subscribed",
            value="subscribed",
            proof=ConsentProof(source=Source.SYSTEM),
        )
        is None
    )
    assert (
        contact_consent_change(
            contact_id=ada.pk,
            status=ConsentStatus.SUBSCRIBED,
            proof=ConsentProof(source=Source.SYSTEM),
        )
        is None
    )
    assert not ConsentRecord.objects.exists()


def test_an_unknown_source_is_refused(ada):
    with pytest.raises(ValueError, match="unknown consent source"):
        consent_record(
            contact_id=ada.pk,
            previous="subscribed",
            value="unsubscribed",
            proof=ConsentProof(source="carrier pigeon"),
        )


def test_a_merge_records_the_stricter_consent_it_keeps_and_brings_the_history(ada):
    # given an unsubscribed visitor with its own history, and a subscribed contact
    visitor = Contact.objects.create()
    contact_consent_change(
        contact_id=visitor.pk,
        status=ConsentStatus.UNSUBSCRIBED,
        proof=ConsentProof(source=Source.ONE_CLICK, who="a link"),
    )
    # when the visitor is merged into the contact
    contact_merge(source=visitor, target=ada, reason="identify")
    # then the survivor is unsubscribed, and its history says why and from where
    ada.refresh_from_db()
    assert ada.email_consent == ConsentStatus.UNSUBSCRIBED
    records = ConsentRecord.objects.filter(contact=ada).order_by("pk")
    assert [(r.source, r.previous, r.value) for r in records] == [
        (Source.ONE_CLICK, "subscribed", "unsubscribed"),
        (Source.MERGE, "subscribed", "unsubscribed"),
    ]
    assert records[1].who == f"contact #{visitor.pk}"


def test_a_deleted_contact_takes_its_records_with_it(ada):
    contact_consent_change(
        contact_id=ada.pk,
        status=ConsentStatus.UNSUBSCRIBED,
        proof=ConsentProof(source=Source.STAFF),
    )
    ada.delete()
    assert not ConsentRecord.objects.exists()
