"""Dedupe of (source, messageId) inside a window of NUDGE_EVENT_DEDUPE_DAYS: a
replay inside it changes nothing, one after it is a new event, and the tick forgets
keys older than it."""

import datetime as dt

import pytest

from apps.contacts.models import Contact
from apps.core import clock
from apps.core.scheduler import tick
from apps.events.ingestion import events_ingest
from apps.events.models import Event, EventKey, PendingEvent
from apps.events.schemas import Track
from apps.events.services import InternalEvent, event_record, events_record_many
from apps.events.storage import PRUNE_PER_TICK

pytestmark = pytest.mark.django_db(transaction=True)

START = dt.datetime(2026, 3, 10, 9, 0, tzinfo=dt.UTC)


def _send(source, message_id: str, user: str = "u-1"):
    message = Track(userId=user, event="order_completed", messageId=message_id)
    return events_ingest(source=source, messages=[message])


def test_a_replay_inside_the_window_is_a_duplicate(server_source, settings):
    settings.NUDGE_EVENT_DEDUPE_DAYS = 35
    with clock.frozen(START):
        # given an event stored (by a new sender: the resolving path) and another
        # (by a known sender: the single-statement path)
        assert _send(server_source, "m-1").accepted == 1
        assert _send(server_source, "m-2").accepted == 1
        # when both come again on the last day of the window, one of them from
        # someone new (whose contact a new event would create)
        clock.advance(dt.timedelta(days=34, hours=23))
        first = _send(server_source, "m-1", user="u-new")
        second = _send(server_source, "m-2")
    # then both are duplicates, and nothing new is stored, pending or created
    assert (first.accepted, first.duplicates) == (0, 1)
    assert (second.accepted, second.duplicates) == (0, 1)
    assert Event.objects.count() == 2
    assert Contact.objects.count() == 1
    assert PendingEvent.objects.count() == 2


def test_a_replay_after_the_window_is_stored_again(server_source, settings):
    settings.NUDGE_EVENT_DEDUPE_DAYS = 35
    with clock.frozen(START):
        # given an event stored
        original = _send(server_source, "m-1").event_ids[0]
        # when the same messageId comes again a day after the window (its key not
        # pruned yet: no tick ran)
        clock.advance(dt.timedelta(days=36))
        again = _send(server_source, "m-1")
        # then it is a new event, pending, and its key starts a new window
        assert (again.accepted, again.duplicates) == (1, 0)
        assert again.event_ids[0] != original
        assert PendingEvent.objects.filter(event_id=again.event_ids[0]).exists()
        assert EventKey.objects.get().received_at == clock.now()
        # and a replay of that inside the new window is a duplicate
        clock.advance(dt.timedelta(days=1))
        assert _send(server_source, "m-1").duplicates == 1
    assert Event.objects.filter(message_id="m-1").count() == 2


def test_the_window_is_a_setting(server_source, settings):
    # given a window of one day
    settings.NUDGE_EVENT_DEDUPE_DAYS = 1
    with clock.frozen(START):
        _send(server_source, "m-1")
        # when the message comes again two days later
        clock.advance(dt.timedelta(days=2))
        result = _send(server_source, "m-1")
    # then it is stored again
    assert result.accepted == 1


def test_the_tick_forgets_keys_older_than_the_window(server_source, settings):
    settings.NUDGE_EVENT_DEDUPE_DAYS = 35
    with clock.frozen(START):
        # given three keys from 36 days ago and one from today
        for message_id in ["old-1", "old-2", "old-3"]:
            _send(server_source, message_id)
        clock.advance(dt.timedelta(days=36))
        _send(server_source, "new-1")
        # when the tick runs
        pruned = tick()["event-keys"]
        # then the old keys are gone, today's stays, and the events all stay
        assert pruned == 3
        assert list(EventKey.objects.values_list("message_id", flat=True)) == ["new-1"]
        assert Event.objects.count() == 4
        # and the next tick has nothing to do
        assert tick()["event-keys"] == 0


def test_the_tick_prunes_a_bounded_batch_at_a_time(server_source, settings):
    settings.NUDGE_EVENT_DEDUPE_DAYS = 1
    # given more expired keys than one tick prunes
    EventKey.objects.bulk_create(
        [
            EventKey(
                source_id=server_source.pk,
                message_id=f"m-{n}",
                received_at=START - dt.timedelta(days=2),
            )
            for n in range(PRUNE_PER_TICK + 5)
        ]
    )
    with clock.frozen(START):
        # when the tick runs twice
        # then the first takes a batch, the second the rest
        assert tick()["event-keys"] == PRUNE_PER_TICK
        assert tick()["event-keys"] == 5
    assert not EventKey.objects.exists()


def test_an_event_nudge_records_twice_inside_the_window_is_recorded_once(
    server_source,
):
    events_ingest(
        source=server_source, messages=[Track(userId="u-1", event="x", messageId="1")]
    )
    contact_id = Event.objects.get().contact_id
    with clock.frozen(START):
        # given an event Nudge recorded
        first = event_record(
            contact_id=contact_id, name="email_opened", properties={}, dedupe_key="k"
        )
        # when it records it again, one by one and many at once (twice in the list)
        clock.advance(dt.timedelta(days=1))
        second = event_record(
            contact_id=contact_id, name="email_opened", properties={}, dedupe_key="k"
        )
        many = [
            InternalEvent(contact_id, "email_sent", {}, key) for key in ["k", "s", "s"]
        ]
        events_record_many(events=many)
    # then only the first and the one new key are stored, each pending
    assert first is not None and second is None
    recorded = Event.objects.exclude(name="x")
    assert sorted(recorded.values_list("message_id", flat=True)) == ["k", "s"]
    assert PendingEvent.objects.filter(event_id__in=recorded.values("pk")).count() == 2
