"""Sending in batches: what the ESP took is recorded together, each message once,
with its email_sent event once; the links a batch makes are the ones reverse()
gives."""

import pytest
from django.conf import settings
from django.db import OperationalError
from django.urls import reverse

from apps.campaigns import delivery
from apps.campaigns.context import signed_url, uses_recent_events
from apps.campaigns.delivery import messages_send_batch
from apps.campaigns.models import Message
from apps.campaigns.recording import RECORD_EVERY
from apps.campaigns.tokens import (
    UNSUBSCRIBE_SALT,
    make_click_token,
    make_contact_token,
)
from apps.contacts.models import Contact
from apps.core import clock
from apps.events.models import Event
from apps.events.services import InternalEvent, events_record_many
from tests.smtp_server import start_smtp

from .conftest import sent_to

pytestmark = pytest.mark.django_db


def _queued(template, count: int) -> list[int]:
    now = clock.now()
    contacts = Contact.objects.bulk_create(
        Contact(email=f"reader-{i}@example.com", first_name=f"Reader{i}")
        for i in range(count)
    )
    return [
        m.pk
        for m in Message.objects.bulk_create(
            Message(contact=c, template=template, created_at=now, send_after=now)
            for c in contacts
        )
    ]


def test_a_batch_records_each_message_sent_with_one_email_sent_event(outbox, template):
    # given more queued messages than are recorded at a time
    ids = _queued(template, 2 * RECORD_EVERY + 3)

    # when a batch sends them, and the same batch runs again
    outcomes = messages_send_batch(message_ids=ids)
    again = messages_send_batch(message_ids=ids)

    # then each went once, is recorded sent as it went, with one event each
    assert outcomes == {"sent": len(ids)} and again == {}
    assert len(outbox) == len(ids)
    sent = Message.objects.filter(pk__in=ids)
    assert {m.status for m in sent} == {Message.Status.SENT}
    assert all(m.sent_at and m.esp_message_id and m.subject for m in sent)
    assert {m.subject for m in sent} >= {"Reader0, your cart is waiting"}
    events = Event.objects.filter(name="email_sent")
    assert sorted(e.properties["message_id"] for e in events) == sorted(ids)


def test_a_batch_that_breaks_records_what_the_esp_took_and_sends_nothing_twice(
    outbox, template, monkeypatch
):
    # given a batch whose third email cannot be built (a bug, not a bad template)
    ids = _queued(template, 5)
    build = delivery._build_email

    def breaks_on_the_third(message, rendered):
        if message.pk == ids[2]:
            raise RuntimeError("a bug")
        return build(message, rendered)

    monkeypatch.setattr(delivery, "_build_email", breaks_on_the_third)

    # when it runs
    with pytest.raises(RuntimeError):
        messages_send_batch(message_ids=ids)

    # then the two the ESP took are recorded sent; the one that broke stays
    # claimed (the tick makes it uncertain); the two after it were never reached
    # and are queued again (their claim counted as an attempt)
    statuses = dict(Message.objects.filter(pk__in=ids).values_list("pk", "status"))
    assert [statuses[i] for i in ids] == ["sent", "sent", "sending", "queued", "queued"]
    assert Message.objects.get(pk=ids[3]).attempts == 1
    # and running the batch again sends those two, and nothing twice
    monkeypatch.setattr(delivery, "_build_email", build)
    assert messages_send_batch(message_ids=ids) == {"sent": 2}
    assert sent_to(outbox) == sorted(
        Message.objects.get(pk=i).to_email for i in (ids[0], ids[1], ids[3], ids[4])
    )


def test_a_batch_whose_esp_cannot_be_reached_leaves_every_message_queued(
    template, settings
):
    # given queued messages and an SMTP server that is down (its port closed)
    ids = _queued(template, RECORD_EVERY + 2)
    server = start_smtp()
    settings.MAILERS = {"default": server.mailer()}
    server.stop()

    # when a batch runs, it fails to connect
    with pytest.raises(OSError):
        messages_send_batch(message_ids=ids)

    # then nothing was claimed: all still queued, no attempt counted, none for
    # the tick to call uncertain
    assert set(
        Message.objects.filter(pk__in=ids).values_list("status", "attempts")
    ) == {(Message.Status.QUEUED, 0)}


def test_a_batch_whose_load_fails_after_the_claim_puts_the_group_back(
    outbox, template, monkeypatch
):
    # given queued messages, and the batch's read of the address list failing
    # (the database gone for a moment) right after its first group's claim
    ids = _queued(template, 3)

    def broken(messages):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(delivery, "send_facts", broken)

    # when the batch runs
    with pytest.raises(OperationalError):
        messages_send_batch(message_ids=ids)

    # then none was handed over and all are queued again, for the next job
    assert outbox == []
    assert set(
        Message.objects.filter(pk__in=ids).values_list("status", "attempts")
    ) == {(Message.Status.QUEUED, 1)}

    # and a group that breaks every time gives up after the attempts allowed,
    # instead of going round the queue for ever
    for _ in range(settings.NUDGE_SEND_MAX_ATTEMPTS - 1):
        with pytest.raises(OperationalError):
            messages_send_batch(message_ids=ids)
    assert set(Message.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
        Message.Status.FAILED
    }
    assert messages_send_batch(message_ids=ids) == {}


def test_internal_events_recorded_together_keep_their_dedupe_keys(contact):
    # given an event already recorded under a key
    first = InternalEvent(
        contact_id=contact.pk, name="email_sent", properties={}, dedupe_key="sent:1"
    )
    events_record_many(events=[first])

    # when it comes again with a new one
    second = InternalEvent(
        contact_id=contact.pk, name="email_sent", properties={}, dedupe_key="sent:2"
    )
    events_record_many(events=[first, second])

    # then each key is there once
    keys = sorted(Event.objects.values_list("message_id", flat=True))
    assert keys == ["sent:1", "sent:2"]


def test_a_signed_link_is_the_url_reverse_gives():
    tokens = [
        make_click_token(message_id=7, url="https://shop.example/p/1?a=b&c=d"),
        make_contact_token(contact_id=1, message_id=2, salt=UNSUBSCRIBE_SALT),
        make_contact_token(
            contact_id=1, message_id=None, salt=UNSUBSCRIBE_SALT, topic_id=3
        ),
    ]
    for name in ("campaigns:click", "campaigns:unsubscribe", "campaigns:view"):
        for token in tokens:
            assert signed_url(name, token) == settings.SITE_URL + reverse(
                name, args=[token]
            )


def test_recent_events_are_read_only_for_templates_that_name_them():
    assert uses_recent_events("", "{% for v in recent_events.product_viewed %}")
    assert not uses_recent_events("Hi {{ contact.first_name }}", None)
