"""One email into one inbox, exactly once, and nothing to the suppressed."""

import datetime as dt
import threading

import django_rq
import pytest
from django.db import connection

from apps.campaigns.delivery import SendOutcome, message_send
from apps.campaigns.models import Message
from apps.campaigns.services import message_create, message_create_test
from apps.contacts.models import ConsentStatus, Contact
from apps.core import clock
from apps.core.scheduler import tick

pytestmark = pytest.mark.django_db


def test_a_message_is_rendered_and_handed_to_the_esp_with_its_headers(
    outbox, template, contact, run_jobs, settings
):
    settings.SITE_URL = "https://nudge.example.com"
    # when
    message, created = message_create(
        contact=contact,
        template=template,
        render_context={"event": {"properties": {"cart_id": "c-1"}}},
    )
    run_jobs()
    # then
    assert created
    # the address it went to is kept with it
    assert Message.objects.get(pk=message.pk).to_email == contact.email
    [email] = outbox
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.subject == "Ada, your cart is waiting"
    assert email.to == ["ada@example.com"]
    assert email.subject == "Ada, your cart is waiting"
    html = email.alternatives[0][0]
    assert "Hello Ada" in html and "Cart c-1" in html
    assert (
        email.extra_headers["Message-ID"] == f"<nudge-{message.pk}@nudge.example.com>"
    )
    assert email.extra_headers["List-Unsubscribe"].startswith(
        "<https://nudge.example.com/e/u/"
    )
    assert email.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert email.metadata == {"nudge_message_id": str(message.pk)}
    assert email.tags == ["cart"]
    assert "Unsubscribe" in email.body  # the generated text part keeps the link
    # over SMTP the long header stays one readable line, not RFC 2047 encoded words
    raw = email.message().as_string()
    assert f"List-Unsubscribe: {email.extra_headers['List-Unsubscribe']}\n" in raw
    assert message.esp_message_id == str(email.anymail_status.message_id)


def test_running_the_send_job_twice_sends_once(outbox, template, contact):
    message, _ = message_create(contact=contact, template=template)
    assert message_send(message_id=message.pk) == SendOutcome.SENT
    assert message_send(message_id=message.pk) == SendOutcome.NOT_CLAIMED
    assert len(outbox) == 1


def test_the_same_enrollment_step_never_gets_a_second_message(
    outbox, template, contact
):
    first, created = message_create(
        contact=contact, template=template, enrollment_id=1, step_id=2
    )
    again, created_again = message_create(
        contact=contact, template=template, enrollment_id=1, step_id=2
    )
    assert created and not created_again
    assert first.pk == again.pk
    assert Message.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_workers_sending_at_once_send_once(
    outbox, template, contact, require_postgres
):
    message, _ = message_create(contact=contact, template=template)
    barrier = threading.Barrier(2)
    outcomes = []

    def worker():
        barrier.wait()
        try:
            outcomes.append(message_send(message_id=message.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [SendOutcome.NOT_CLAIMED, SendOutcome.SENT]
    assert len(outbox) == 1


@pytest.mark.parametrize(
    "consent",
    [
        ConsentStatus.UNSUBSCRIBED,
        ConsentStatus.BOUNCED,
        ConsentStatus.COMPLAINED,
        ConsentStatus.PENDING,
    ],
)
def test_a_suppressed_contact_gets_nothing(
    outbox, template, contact, run_jobs, consent
):
    contact.email_consent = consent
    contact.save()
    message, _ = message_create(contact=contact, template=template)
    run_jobs()
    message.refresh_from_db()
    assert outbox == []
    assert message.status == Message.Status.SUPPRESSED
    assert message.error == f"suppressed: contact is {consent}"


def test_an_esp_outage_is_retried_later_then_given_up(
    outbox, template, settings, django_capture_on_commit_callbacks
):
    settings.NUDGE_SEND_MAX_ATTEMPTS = 3
    contact = Contact.objects.create(email="fail-500@example.com")
    message, _ = message_create(contact=contact, template=template)
    # when the ESP answers 500
    with django_capture_on_commit_callbacks(execute=True):
        assert message_send(message_id=message.pk) == SendOutcome.RETRY
    message.refresh_from_db()
    # then it waits in the queue with a backoff, and the retry is scheduled in RQ
    assert message.status == Message.Status.QUEUED
    assert message.send_after > clock.now() + dt.timedelta(seconds=50)
    assert "ESP unavailable" in message.error
    assert django_rq.get_queue("email").scheduled_job_registry.count == 1
    # and it is not tried again before it is due
    assert message_send(message_id=message.pk) == SendOutcome.NOT_CLAIMED
    for _ in range(2):
        with clock.frozen(message.send_after + dt.timedelta(seconds=1)):
            outcome = message_send(message_id=message.pk)
        message.refresh_from_db()
    assert outcome == SendOutcome.FAILED
    assert message.status == Message.Status.FAILED
    assert message.attempts == 3
    assert message.error.startswith("gave up after 3 attempts")


def test_a_permanent_esp_error_fails_at_once_and_others_still_go(
    outbox, template, run_jobs
):
    good_1 = Contact.objects.create(email="one@example.com")
    bad = Contact.objects.create(email="fail-400@example.com")
    good_2 = Contact.objects.create(email="two@example.com")
    messages = [
        message_create(contact=c, template=template)[0] for c in (good_1, bad, good_2)
    ]
    run_jobs()
    statuses = {m.contact.email: Message.objects.get(pk=m.pk).status for m in messages}
    assert statuses == {
        "one@example.com": "sent",
        "fail-400@example.com": "failed",
        "two@example.com": "sent",
    }
    assert sorted(e.to[0] for e in outbox) == ["one@example.com", "two@example.com"]
    assert "invalid From address" in Message.objects.get(contact=bad).error


def test_a_refused_recipient_fails_with_the_reason(outbox, template):
    contact = Contact.objects.create(email="refused@example.com")
    message, _ = message_create(contact=contact, template=template)
    assert message_send(message_id=message.pk) == SendOutcome.FAILED
    message.refresh_from_db()
    assert "recipient refused" in message.error


def test_a_template_that_cannot_render_fails_with_the_reason(outbox, template, contact):
    template.html_body = "{% for i in (1..100000000) %}x{% endfor %}"
    template.save()
    message, _ = message_create(contact=contact, template=template)
    assert message_send(message_id=message.pk) == SendOutcome.FAILED
    message.refresh_from_db()
    assert message.error.startswith("template error: html_body")
    assert outbox == []


def test_a_send_left_half_done_by_a_dead_worker_becomes_uncertain_not_resent(
    outbox, template, contact, admin_client
):
    message, _ = message_create(contact=contact, template=template)
    # given a worker that claimed the message and died before recording the outcome
    Message.objects.filter(pk=message.pk).update(
        status=Message.Status.SENDING, claimed_at=clock.now()
    )
    # when the tick runs long after
    with clock.frozen(clock.now() + dt.timedelta(hours=1)):
        tick()
        tick()
    # then it is uncertain, never sent again, and listed in admin
    message.refresh_from_db()
    assert message.status == Message.Status.UNCERTAIN
    assert message_send(message_id=message.pk) == SendOutcome.NOT_CLAIMED
    assert outbox == []
    listing = admin_client.get("/admin/campaigns/message/?status__exact=uncertain")
    assert f"/admin/campaigns/message/{message.pk}/change/" in listing.content.decode()


def test_the_tick_sends_queued_messages_whose_job_redis_lost(
    outbox, template, contact, run_jobs
):
    message, _ = message_create(contact=contact, template=template)
    django_rq.get_connection("default").flushdb()
    with clock.frozen(clock.now() + dt.timedelta(minutes=1)):
        assert tick()["email"] == 1
        run_jobs()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert len(outbox) == 1


def test_a_test_send_goes_to_the_typed_address_marked_as_a_test(
    outbox, template, contact
):
    contact.email_consent = ConsentStatus.UNSUBSCRIBED
    contact.save()
    message = message_create_test(
        template=template, contact=contact, to_email="me@agency.example"
    )
    assert message_send(message_id=message.pk) == SendOutcome.SENT
    [email] = outbox
    assert email.to == ["me@agency.example"]
    assert email.subject.startswith("[TEST] Ada")
    assert Message.objects.get().is_test


def test_a_sent_message_is_recorded_as_an_email_sent_event(outbox, template, contact):
    from apps.events.models import Event

    message, _ = message_create(contact=contact, template=template)
    message_send(message_id=message.pk)
    event = Event.objects.get(name="email_sent")
    assert event.contact_id == contact.pk
    assert event.properties["message_id"] == message.pk
    assert event.properties["template"] == "Cart reminder"
