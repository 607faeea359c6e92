"""Who is behind each event: anonymous ids, user ids, emails and merges."""

import datetime as dt
import uuid

import pytest

from apps.contacts.models import ConsentStatus, Contact, ContactMerge, Identity
from apps.contacts.services import Sighting, contacts_lookup, contacts_resolve
from apps.events.ingestion import events_ingest
from apps.events.models import Event
from apps.events.schemas import Alias, Identify, Track

pytestmark = pytest.mark.django_db


def _track(anonymous_id=None, user_id=None, event="product_viewed", **props):
    return Track(
        anonymousId=anonymous_id,
        userId=user_id,
        event=event,
        properties=props,
        messageId=str(uuid.uuid4()),
    )


def _identify(anonymous_id=None, user_id=None, **traits):
    return Identify(
        anonymousId=anonymous_id,
        userId=user_id,
        traits=traits,
        messageId=str(uuid.uuid4()),
    )


def test_anonymous_browsing_then_identify_merges_into_the_known_contact(
    browser_source, server_source
):
    # given a known customer, and a visitor browsing anonymously on another device
    events_ingest(
        source=server_source,
        messages=[_identify(user_id="u-1", email="ada@example.com")],
    )
    known = Contact.objects.get(external_id="u-1")
    events_ingest(
        source=browser_source,
        messages=[
            _track("cookie-9"),
            _track("cookie-9"),
            _track("cookie-9", event="add_to_cart"),
        ],
    )
    anonymous = Contact.objects.get(identities__anonymous_id="cookie-9")
    assert anonymous.pk != known.pk
    # when the visitor logs in
    events_ingest(source=browser_source, messages=[_identify("cookie-9", "u-1")])
    # then every event is on the known contact, none twice, and the merge is recorded
    assert Contact.objects.count() == 1
    assert Event.objects.filter(contact=known).count() == 5
    assert Identity.objects.get(anonymous_id="cookie-9").contact_id == known.pk
    merge = ContactMerge.objects.get()
    assert merge.merged_contact_id == anonymous.pk
    assert merge.into_id == known.pk
    assert merge.moved == {"identities": 1, "events": 3}
    assert merge.snapshot["id"] == anonymous.pk


def test_identify_within_one_batch_needs_no_merge(browser_source):
    events_ingest(
        source=browser_source,
        messages=[
            _track("cookie-1"),
            _identify("cookie-1", email="grace@example.com", firstName="Grace"),
            _track("cookie-1", event="add_to_cart"),
        ],
    )
    contact = Contact.objects.get()
    assert contact.email == "grace@example.com"
    assert contact.first_name == "Grace"
    assert contact.events.count() == 3
    assert not ContactMerge.objects.exists()


def test_an_email_identifies_case_insensitively(browser_source, server_source):
    events_ingest(
        source=server_source,
        messages=[_identify(user_id="u-1", email="Ada@Example.com")],
    )
    events_ingest(
        source=browser_source, messages=[_identify("cookie-2", email="ADA@example.COM")]
    )
    assert Contact.objects.count() == 1
    assert Contact.objects.get().email == "ada@example.com"


def test_traits_merge_with_the_newer_winning(browser_source, server_source):
    # given an old known contact and a more recently seen anonymous one
    events_ingest(
        source=server_source,
        messages=[_identify(user_id="u-1", plan="free", city="Paris")],
    )
    known = Contact.objects.get()
    Contact.objects.filter(pk=known.pk).update(
        last_seen_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    )
    events_ingest(source=browser_source, messages=[_identify("cookie-3", plan="pro")])
    Contact.objects.filter(identities__anonymous_id="cookie-3").update(
        last_seen_at=dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    )
    # when
    events_ingest(source=browser_source, messages=[_track("cookie-3", user_id="u-1")])
    # then
    contact = Contact.objects.get()
    assert contact.attributes == {"plan": "pro", "city": "Paris"}
    assert contact.last_seen_at == dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def test_a_browser_key_cannot_change_a_known_contacts_email(browser_source):
    events_ingest(
        source=browser_source, messages=[_identify("cookie-4", email="old@example.com")]
    )
    events_ingest(
        source=browser_source,
        messages=[_identify("cookie-4", email="attacker@evil.example")],
    )
    assert Contact.objects.get().email == "old@example.com"


def test_a_server_key_can_change_an_email(server_source):
    events_ingest(
        source=server_source,
        messages=[_identify(user_id="u-5", email="old@example.com")],
    )
    events_ingest(
        source=server_source,
        messages=[_identify(user_id="u-5", email="new@example.com")],
    )
    assert Contact.objects.get().email == "new@example.com"


def test_a_browser_key_cannot_set_consent(browser_source, server_source):
    events_ingest(
        source=server_source,
        messages=[_identify(user_id="u-6", email_consent="unsubscribed")],
    )
    assert Contact.objects.get().email_consent == ConsentStatus.UNSUBSCRIBED
    events_ingest(
        source=browser_source,
        messages=[_identify(user_id="u-6", email_consent="subscribed")],
    )
    assert Contact.objects.get().email_consent == ConsentStatus.UNSUBSCRIBED


def test_a_browser_key_cannot_merge_two_known_contacts(browser_source):
    # given two known people on one shared computer
    events_ingest(
        source=browser_source,
        messages=[_identify("shared-cookie", email="a@example.com")],
    )
    events_ingest(source=browser_source, messages=[_identify("other-cookie", "u-7")])
    # when someone tries to join them through the public key
    events_ingest(
        source=browser_source, messages=[_track("shared-cookie", user_id="u-7")]
    )
    # then both stay, with their own email / user id
    assert Contact.objects.count() == 2
    assert not ContactMerge.objects.exists()
    assert Contact.objects.get(email="a@example.com").external_id is None


def test_a_shared_device_starts_a_new_contact_for_another_user(browser_source):
    events_ingest(source=browser_source, messages=[_identify("kiosk", "u-8")])
    events_ingest(source=browser_source, messages=[_identify("kiosk", "u-9")])
    assert set(Contact.objects.values_list("external_id", flat=True)) == {"u-8", "u-9"}
    assert Identity.objects.get(anonymous_id="kiosk").contact.external_id == "u-9"


def test_alias_merges_the_previous_id_into_the_user(browser_source, server_source):
    events_ingest(
        source=browser_source, messages=[_track("cookie-10"), _track("cookie-10")]
    )
    events_ingest(
        source=server_source,
        messages=[_identify(user_id="u-10", email="x@example.com")],
    )
    events_ingest(
        source=server_source,
        messages=[Alias(previousId="cookie-10", userId="u-10", messageId="alias-1")],
    )
    contact = Contact.objects.get()
    assert contact.external_id == "u-10"
    assert contact.events.count() == 4
    assert ContactMerge.objects.get().reason == "alias"


def test_a_merge_never_resubscribes_anyone(server_source):
    events_ingest(
        source=server_source, messages=[_identify("c-11", email_consent="unsubscribed")]
    )
    events_ingest(
        source=server_source,
        messages=[_identify(user_id="u-11", email="k@example.com")],
    )
    events_ingest(source=server_source, messages=[_track("c-11", user_id="u-11")])
    assert Contact.objects.get().email_consent == ConsentStatus.UNSUBSCRIBED


def test_context_timezone_and_locale_fill_in_the_contact(browser_source):
    message = _track("cookie-12")
    message.context = {"timezone": "Europe/Paris", "locale": "fr-FR"}
    events_ingest(source=browser_source, messages=[message])
    contact = Contact.objects.get()
    assert (contact.timezone, contact.locale) == ("Europe/Paris", "fr-FR")


def test_a_known_visitor_with_nothing_new_is_found_without_writing(browser_source):
    events_ingest(source=browser_source, messages=[_track("cookie-13")])
    contact = Contact.objects.get()
    lookup = contacts_lookup(
        sightings=[Sighting(anonymous_id="cookie-13")], trusted=False
    )
    assert lookup.contact_ids == [contact.pk]
    # but a trait to set is a write, so the lookup leaves that to contacts_resolve
    lookup = contacts_lookup(
        sightings=[Sighting(anonymous_id="cookie-13", traits={"plan": "pro"})],
        trusted=False,
    )
    assert lookup.contact_ids is None


def test_a_known_visitor_gets_a_timezone_and_locale_only_where_they_were_blank(
    browser_source,
):
    # given a visitor seen before without a timezone or locale
    events_ingest(source=browser_source, messages=[_track("cookie-17")])
    contact = Contact.objects.get()
    assert (contact.timezone, contact.locale) == ("", "")
    # when a later call carries them, they fill in
    later = _track("cookie-17")
    later.context = {"timezone": "Europe/Paris", "locale": "fr-FR"}
    events_ingest(source=browser_source, messages=[later])
    contact.refresh_from_db()
    assert (contact.timezone, contact.locale) == ("Europe/Paris", "fr-FR")
    # and a call from elsewhere afterwards changes neither, nor writes anything
    travelling = Sighting(
        anonymous_id="cookie-17", context_timezone="Asia/Tokyo", context_locale="ja"
    )
    lookup = contacts_lookup(sightings=[travelling], trusted=False)
    assert lookup.contact_ids == [contact.pk]
    away = _track("cookie-17")
    away.context = {"timezone": "Asia/Tokyo", "locale": "ja"}
    events_ingest(source=browser_source, messages=[away])
    contact.refresh_from_db()
    assert (contact.timezone, contact.locale) == ("Europe/Paris", "fr-FR")
    assert Event.objects.filter(contact=contact).count() == 3


def test_a_batch_of_known_and_new_visitors_creates_only_the_new_ones(browser_source):
    events_ingest(source=browser_source, messages=[_track("cookie-18")])
    known = Contact.objects.get()
    events_ingest(
        source=browser_source,
        messages=[_track("cookie-18"), _track("cookie-19"), _track("cookie-18")],
    )
    assert Contact.objects.count() == 2
    new = Contact.objects.exclude(pk=known.pk).get()
    assert Identity.objects.get(anonymous_id="cookie-19").contact_id == new.pk
    assert Event.objects.filter(contact=known).count() == 3
    assert Event.objects.filter(contact=new).count() == 1


def test_visitors_only_lookup_decides_as_the_resolver(require_postgres, browser_source):
    # given two known visitors, one without a timezone, the other without a locale
    a, b = _track("cookie-20"), _track("cookie-21")
    a.context = {"locale": "fr-FR"}
    b.context = {"timezone": "Europe/Paris"}
    events_ingest(source=browser_source, messages=[a, b])
    pa = Contact.objects.get(identities__anonymous_id="cookie-20").pk
    pb = Contact.objects.get(identities__anonymous_id="cookie-21").pk

    def lookup(*sightings):
        return contacts_lookup(sightings=list(sightings), trusted=False)

    # then several of them, one twice, are found in order without a write
    found = lookup(
        Sighting(anonymous_id="cookie-20"),
        Sighting(anonymous_id="cookie-21", context_locale=""),
        Sighting(anonymous_id="cookie-20", context_locale="de-DE"),
    )
    assert found.known == [pa, pb, pa]
    # but a blank timezone, or locale, that the call can fill is a write
    assert (
        lookup(Sighting(anonymous_id="cookie-20", context_timezone="UTC")).contact_ids
        is None
    )
    assert (
        lookup(Sighting(anonymous_id="cookie-21", context_locale="fr")).contact_ids
        is None
    )
    # and so is a new visitor beside known ones, decided from the whole rows
    mixed = lookup(
        Sighting(anonymous_id="cookie-20"), Sighting(anonymous_id="cookie-22")
    )
    assert mixed.contact_ids is None and mixed.known is None
    assert {row[0] for row in mixed.rows} == {"cookie-20"}
    resolution = contacts_resolve(
        sightings=[
            Sighting(anonymous_id="cookie-20"),
            Sighting(anonymous_id="cookie-22"),
        ],
        trusted=False,
        lookup=mixed,
    )
    assert resolution.contact_ids[0] == pa
    assert (
        Identity.objects.get(anonymous_id="cookie-22").contact_id
        == resolution.contact_ids[1]
    )
    # and a lookup naming someone by more than a visitor id is the resolver's
    assert lookup(Sighting(anonymous_id="cookie-20", user_id="u-20")).known is None


def test_a_lookup_overtaken_by_another_request_is_decided_again(
    require_postgres, browser_source
):
    # given a lookup that found a new visitor
    sightings = [Sighting(anonymous_id="cookie-14")]
    lookup = contacts_lookup(sightings=sightings, trusted=False)
    assert lookup.contact_ids is None
    # when another request creates that visitor before this one locks
    events_ingest(source=browser_source, messages=[_track("cookie-14")])
    created = Contact.objects.get()
    resolution = contacts_resolve(sightings=sightings, trusted=False, lookup=lookup)
    # then this one finds that contact instead of making a second
    assert resolution.contact_ids == [created.pk]
    assert not resolution.wrote
    assert Contact.objects.count() == 1


def test_a_later_event_of_a_batch_still_fills_in_the_timezone(browser_source):
    first, later, again = _track("cookie-15"), _track("cookie-15"), _track("cookie-15")
    later.context = {"timezone": "Europe/Paris"}
    again.context = {"timezone": "Asia/Tokyo"}
    events_ingest(source=browser_source, messages=[first, later, again, _track("c-16")])
    contact = Contact.objects.get(identities__anonymous_id="cookie-15")
    assert contact.timezone == "Europe/Paris"
    assert Event.objects.filter(contact=contact).count() == 3
