"""Traits landing on contacts: concurrent updates of one contact keep every key."""

import threading
import time
import uuid

import pytest
from django.db import connection, connections, transaction

from apps.contacts.identity import save_traits
from apps.contacts.models import Contact
from apps.contacts.services import contact_update_traits
from apps.events.ingestion import events_ingest
from apps.events.schemas import Identify

pytestmark = pytest.mark.django_db(transaction=True)

WAIT_SECONDS = 30


def _identify(anonymous_id=None, user_id=None, **traits):
    return Identify(
        anonymousId=anonymous_id,
        userId=user_id,
        traits=traits,
        messageId=str(uuid.uuid4()),
    )


def _waiting_on_a_lock() -> int:
    """How many other sessions of this database wait for a lock (a row's)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def test_two_concurrent_identifies_of_one_contact_keep_both_traits(
    require_postgres, server_source
):
    # given a contact known by a user id and by an anonymous id
    events_ingest(
        source=server_source,
        messages=[_identify(anonymous_id="anon-1", user_id="u-1", plan="free")],
    )
    errors: list[BaseException] = []
    written, commit = threading.Event(), threading.Event()

    def by_user_id() -> None:
        try:
            with transaction.atomic():
                events_ingest(
                    source=server_source,
                    messages=[_identify(user_id="u-1", company="acme")],
                )
                written.set()
                # held open until the other identify has read the contact and
                # waits to write it
                assert commit.wait(WAIT_SECONDS)
        except BaseException as exc:  # the test reports it below
            errors.append(exc)
        finally:
            written.set()
            connections.close_all()

    def by_anonymous_id() -> None:
        try:
            events_ingest(
                source=server_source,
                messages=[_identify(anonymous_id="anon-1", plan="pro")],
            )
        except BaseException as exc:  # the test reports it below
            errors.append(exc)
        finally:
            connections.close_all()

    # when one identify has written the contact, not yet committed, and another
    # (naming them by another key, so under another identity lock) reads it and
    # waits for the first's row lock to write it
    first = threading.Thread(target=by_user_id)
    first.start()
    assert written.wait(WAIT_SECONDS)
    second = threading.Thread(target=by_anonymous_id)
    second.start()
    deadline = time.monotonic() + WAIT_SECONDS
    while not _waiting_on_a_lock() and second.is_alive():
        assert time.monotonic() < deadline, "the second identify never waited"
        threading.Event().wait(0.01)
    commit.set()
    first.join(WAIT_SECONDS)
    second.join(WAIT_SECONDS)
    # then both traits are there
    assert errors == []
    assert Contact.objects.get().attributes == {"plan": "pro", "company": "acme"}


def test_updating_traits_from_a_stale_copy_keeps_what_was_written_meanwhile():
    # given two copies of one contact, as two admin requests would load it
    contact = Contact.objects.create(attributes={"plan": "free"})
    stale = Contact.objects.get(pk=contact.pk)
    # when each sets a trait
    contact_update_traits(contact=contact, traits={"company": "acme"}, trusted=True)
    contact_update_traits(
        contact=stale, traits={"plan": "pro", "firstName": "Ada"}, trusted=True
    )
    # then both landed, and the copy shows what is stored
    contact.refresh_from_db()
    assert contact.attributes == {"plan": "pro", "company": "acme"}
    assert contact.first_name == "Ada"
    assert stale.attributes == contact.attributes


def test_saving_traits_sets_and_removes_only_the_keys_named():
    # given a contact, and a copy of it that knows none of its attributes
    contact = Contact.objects.create(attributes={"plan": "free", "trial": True})
    copy = Contact.objects.only("pk").get(pk=contact.pk)
    # when one attribute is set and another removed through the copy
    save_traits(copy, fields=set(), attributes={"plan": "pro"}, remove=["trial"])
    # then the others stay
    contact.refresh_from_db()
    assert contact.attributes == {"plan": "pro"}


def test_a_server_key_trait_never_lifts_a_bounce_and_keeps_the_address_list(
    server_source,
):
    from apps.contacts.models import ConsentStatus, SuppressedAddress
    from apps.contacts.suppression import address_suppress, address_suppression

    # given a bounced contact
    events_ingest(
        source=server_source,
        messages=[_identify(user_id="u-b", email="b@example.com")],
    )
    Contact.objects.filter(external_id="u-b").update(
        email_consent=ConsentStatus.BOUNCED
    )
    address_suppress(email="b@example.com", reason=SuppressedAddress.Reason.BOUNCED)
    # when the site's server says "subscribed"
    events_ingest(
        source=server_source,
        messages=[_identify(user_id="u-b", email_consent="subscribed")],
    )
    # then the bounce stands
    assert Contact.objects.get(external_id="u-b").email_consent == "bounced"
    assert address_suppression("b@example.com").reason == "bounced"
    # and an unsubscribe it sends reaches the address list, and a later
    # resubscribe from the server lifts only that
    events_ingest(
        source=server_source,
        messages=[_identify(user_id="u-c", email="c@example.com")],
    )
    events_ingest(
        source=server_source,
        messages=[_identify(user_id="u-c", email_consent="unsubscribed")],
    )
    assert address_suppression("c@example.com").reason == "unsubscribed"
    events_ingest(
        source=server_source,
        messages=[_identify(user_id="u-c", email_consent="subscribed")],
    )
    assert Contact.objects.get(external_id="u-c").email_consent == "subscribed"
    assert address_suppression("c@example.com") is None


def test_a_contact_created_unsubscribed_puts_its_address_on_the_list(server_source):
    from apps.contacts.suppression import address_suppression

    # when the site's server names a new person who has unsubscribed (an import of
    # its old list, say), in one call and in a batch of two
    events_ingest(
        source=server_source,
        messages=[
            _identify(
                user_id="u-n", email="n@example.com", email_consent="unsubscribed"
            )
        ],
    )
    events_ingest(
        source=server_source,
        messages=[
            _identify(
                user_id="u-o", email="o@example.com", email_consent="unsubscribed"
            ),
            _identify(user_id="u-p", email="p@example.com", email_consent="subscribed"),
        ],
    )
    # then the unsubscribes are kept for their addresses, as for a known contact
    assert Contact.objects.get(external_id="u-n").email_consent == "unsubscribed"
    assert address_suppression("n@example.com").reason == "unsubscribed"
    assert address_suppression("o@example.com").reason == "unsubscribed"
    assert address_suppression("p@example.com") is None
    # and outlive the contact
    Contact.objects.filter(external_id="u-n").delete()
    assert address_suppression("n@example.com").reason == "unsubscribed"
