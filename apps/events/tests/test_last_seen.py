"""A contact's last_seen_at: moved forward by what they did, never back, and never
by what Nudge did to them (an email sent, a segment entered)."""

import datetime as dt
import uuid

import pytest

from apps.contacts.models import Contact
from apps.core import clock
from apps.events.ingestion import events_ingest
from apps.events.models import Event
from apps.events.processing import events_process
from apps.events.schemas import Track
from apps.events.services import InternalEvent, event_record, events_record_many

pytestmark = pytest.mark.django_db(transaction=True)

START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def _did_something(source, user_id: str, at: dt.datetime) -> list[int]:
    """A track call from the site, sent (and received) at ``at``."""
    with clock.frozen(at):
        message = Track(
            userId=user_id,
            event="viewed_product",
            messageId=str(uuid.uuid4()),
            timestamp=at,
        )
        return events_ingest(source=source, messages=[message]).event_ids


def _seen(user_id: str) -> dt.datetime | None:
    return Contact.objects.get(external_id=user_id).last_seen_at


def test_a_contacts_own_events_move_last_seen_forward_never_back(browser_source):
    # given two contacts' events, taken in one processing job
    ids = _did_something(browser_source, "ann", START + 2 * HOUR)
    ids += _did_something(browser_source, "bob", START + HOUR)
    # an older event of ann's arriving late, in the same job
    ids += _did_something(browser_source, "ann", START)
    assert events_process(event_ids=ids) == 3
    # then each was last seen at their latest event
    assert _seen("ann") == START + 2 * HOUR
    assert _seen("bob") == START + HOUR

    # and an event older than the last one seen, processed later, moves nothing
    late = _did_something(browser_source, "bob", START)
    assert events_process(event_ids=late) == 1
    assert _seen("bob") == START + HOUR


def test_what_nudge_records_about_a_contact_does_not_make_them_seen(
    browser_source,
):
    # given a contact last seen on the site at START
    seen = _did_something(browser_source, "cat", START)
    events_process(event_ids=seen)
    contact = Contact.objects.get(external_id="cat")
    # when Nudge sends them a newsletter a week later (email_sent, internal)
    later = START + dt.timedelta(days=7)
    with clock.frozen(later):
        events_record_many(
            events=[
                InternalEvent(
                    contact_id=contact.pk,
                    name="email_sent",
                    properties={"message_id": 1, "campaign_id": 1},
                    dedupe_key="sent:1",
                )
            ]
        )
    sent = Event.objects.get(name="email_sent")
    assert sent.timestamp == later
    assert events_process(event_ids=[sent.pk]) == 1
    # then they are still last seen at START: a win-back still finds them
    assert _seen("cat") == START


def test_what_the_contact_did_through_nudge_makes_them_seen(browser_source):
    # given a contact last seen on the site at START
    seen = _did_something(browser_source, "dan", START)
    events_process(event_ids=seen)
    contact = Contact.objects.get(external_id="dan")
    # when Nudge records, a day later, a click of theirs (by_contact) and, two
    # days later, an open the ESP reported (not by_contact: may be a prefetch)
    clicked_at, opened_at = START + dt.timedelta(days=1), START + dt.timedelta(days=2)
    with clock.frozen(clicked_at):
        click = event_record(
            contact_id=contact.pk,
            name="email_clicked",
            properties={"url": "https://shop.example/"},
            dedupe_key="click:1",
            process_now=False,
            by_contact=True,
        )
    with clock.frozen(opened_at):
        opened = event_record(
            contact_id=contact.pk,
            name="email_opened",
            properties={},
            dedupe_key="open:1",
            process_now=False,
        )
    assert events_process(event_ids=[click.pk, opened.pk]) == 2
    # then the click made them seen, the open did not
    assert _seen("dan") == clicked_at
