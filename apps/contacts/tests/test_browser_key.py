"""What a browser (public) key may not do to a contact: give a known person an
email, or set protected traits. The event is kept, the change is not applied, and
the refusal is logged."""

import logging
import uuid

import pytest

from apps.contacts.identity.traits import is_protected_trait
from apps.contacts.models import Contact
from apps.events.ingestion import events_ingest
from apps.events.models import Event
from apps.events.schemas import Identify

pytestmark = pytest.mark.django_db

REFUSALS = "apps.contacts.identity.refusals"


def _identify(anonymous_id=None, user_id=None, **traits):
    return Identify(
        anonymousId=anonymous_id,
        userId=user_id,
        traits=traits,
        messageId=str(uuid.uuid4()),
    )


def _refused(caplog) -> list[tuple[int, str]]:
    return [(r.contact_id, r.refused) for r in caplog.records if r.name == REFUSALS]


def test_a_browser_key_cannot_give_an_email_to_a_contact_known_by_user_id(
    browser_source, server_source, caplog
):
    # given a customer the shop's server knows by user id only
    events_ingest(source=server_source, messages=[_identify(user_id="u-1")])
    customer = Contact.objects.get()
    caplog.set_level(logging.WARNING, logger=REFUSALS)
    # when someone who guessed the user id names it with their own address
    events_ingest(
        source=browser_source,
        messages=[_identify("cookie-x", "u-1", email="mallory@evil.example")],
    )
    # then the customer keeps no email, the event is kept, the refusal is logged
    customer.refresh_from_db()
    assert customer.email is None
    assert not Contact.objects.filter(email="mallory@evil.example").exists()
    stored = Event.objects.get(source=browser_source)
    assert stored.properties["traits"]["email"] == "mallory@evil.example"
    assert _refused(caplog) == [(customer.pk, "email")]


def test_a_browser_key_still_gives_a_visitor_the_email_they_identify_with(
    browser_source, caplog
):
    caplog.set_level(logging.WARNING, logger=REFUSALS)
    # given a visitor browsing anonymously
    events_ingest(source=browser_source, messages=[_identify("cookie-1", plan="a")])
    # when they sign in: a user id and an email at once, then another call later
    events_ingest(
        source=browser_source,
        messages=[_identify("cookie-1", "u-2", email="ada@example.com")],
    )
    # and a new visitor identifies in one batch: user id first, email next
    events_ingest(
        source=browser_source,
        messages=[
            _identify("cookie-2", "u-3"),
            _identify("cookie-2", "u-3", email="bob@example.com"),
        ],
    )
    # then both have their emails, and nothing was refused
    assert Contact.objects.get(external_id="u-2").email == "ada@example.com"
    assert Contact.objects.get(external_id="u-3").email == "bob@example.com"
    assert _refused(caplog) == []


def test_changing_an_email_from_a_browser_key_is_logged(browser_source, caplog):
    events_ingest(
        source=browser_source, messages=[_identify("cookie-4", email="old@example.com")]
    )
    caplog.set_level(logging.WARNING, logger=REFUSALS)
    events_ingest(
        source=browser_source,
        messages=[_identify("cookie-4", email="attacker@evil.example")],
    )
    contact = Contact.objects.get()
    assert contact.email == "old@example.com"
    assert _refused(caplog) == [(contact.pk, "email")]


PROTECTED = {
    "owner_email": "mallory@evil.example",
    "ownerEmail": "mallory@evil.example",
    "owner": "mallory",
    "phone": "+15550100",
    "work_email": "mallory@evil.example",
    "email_consent": "subscribed",
    "sms_consent": True,
    "unsubscribed": False,
    "newsletter_subscribed": True,
}


def test_a_browser_identify_by_email_sets_ordinary_traits_only(
    browser_source, server_source, caplog
):
    # given a customer the server knows, with an owner
    events_ingest(
        source=server_source,
        messages=[
            _identify(
                user_id="u-5",
                email="ada@example.com",
                owner_email="sales@shop.example",
                email_consent="unsubscribed",
            )
        ],
    )
    customer = Contact.objects.get()
    caplog.set_level(logging.WARNING, logger=REFUSALS)
    # when a browser names the customer's email with protected and ordinary traits
    events_ingest(
        source=browser_source,
        messages=[
            _identify("cookie-9", email="ada@example.com", plan="pro", **PROTECTED)
        ],
    )
    # then only the ordinary trait lands; the event keeps them all; each is logged
    customer.refresh_from_db()
    assert customer.attributes == {"owner_email": "sales@shop.example", "plan": "pro"}
    assert customer.phone == ""
    assert customer.email_consent == "unsubscribed"
    stored = Event.objects.get(source=browser_source)
    assert stored.properties["traits"]["owner_email"] == "mallory@evil.example"
    assert sorted(_refused(caplog)) == sorted((customer.pk, k) for k in PROTECTED)


def test_a_browser_key_cannot_set_protected_traits_on_a_new_visitor_either(
    browser_source,
):
    # (else a visitor would set owner_email on themselves, then identify as a
    # customer and have it fill the customer's blank on the merge)
    events_ingest(
        source=browser_source,
        messages=[_identify("cookie-7", owner_email="mallory@evil.example", plan="a")],
    )
    assert Contact.objects.get().attributes == {"plan": "a"}


def test_a_server_key_sets_protected_traits(server_source):
    events_ingest(
        source=server_source,
        messages=[
            _identify(user_id="u-6", owner_email="sales@shop.example", phone="1")
        ],
    )
    contact = Contact.objects.get()
    assert contact.attributes == {"owner_email": "sales@shop.example"}
    assert contact.phone == "1"


@pytest.mark.parametrize(
    ("name", "protected"),
    [
        ("owner_email", True),
        ("OwnerId", True),
        ("mobile_phone", True),
        ("opt-in", True),
        ("topics", True),
        ("plan", False),
        ("subscription_plan", False),
        ("last_email_opened_at", False),
        ("city", False),
    ],
)
def test_protected_trait_names(name, protected):
    assert is_protected_trait(name) is protected
