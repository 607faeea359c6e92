"""Chaos: real worker and scheduler processes, SIGKILLed and restarted, Redis flushed,
and an ESP that sometimes takes a message and then does not answer in time, while a
site sends events over HTTP and a schedule enrolls everyone. Every event is
processed, every enrollment finishes, no step's email goes out twice, and every send
that was cut off is marked uncertain, never silently sent again."""

import datetime as dt
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import django_rq
import pytest

from apps.campaigns.models import Message
from apps.contacts.models import Contact
from apps.core import clock
from apps.events.models import Event, EventFailure, PendingEvent
from apps.workflows.models import Enrollment, TriggerRun
from apps.workflows.services import enrollment_start
from tests.postmark_server import TOKEN, start_postmark
from tests.processes import wait_for

from .conftest import Shop

pytestmark = pytest.mark.django_db(transaction=True)

TWO_EMAILS = dict(
    trigger={"type": "manual"},
    steps=[
        {
            "key": "first",
            "type": "send_email",
            "config": {"template": "A"},
            "next": {"next": "pause"},
        },
        {
            "key": "pause",
            "type": "wait",
            "config": {"duration": {"seconds": 2}},
            "next": {"next": "second"},
        },
        {"key": "second", "type": "send_email", "config": {"template": "B"}},
    ],
)


CART = dict(
    trigger={"type": "event", "event": "add_to_cart"},
    steps=[{"key": "remind", "type": "send_email", "config": {"template": "A"}}],
)


def this_minute_once() -> dict:
    """A schedule whose one occurrence is this minute (UTC, the contacts' zone):
    due at the scheduler's first look, and not again while the test asserts."""
    now = clock.now().astimezone(dt.UTC)
    return dict(
        trigger={
            "type": "schedule",
            "cron": f"{now.minute} {now.hour} {now.day} {now.month} *",
        },
        steps=[{"key": "hold", "type": "wait", "config": {"duration": {"seconds": 1}}}],
    )


def unsettled() -> dict[str, int]:
    """What is still to finish (nothing, once settled)."""
    counts = {
        "running enrollments": Enrollment.objects.filter(
            status__in=Enrollment.RUNNING
        ).count(),
        "messages to send": Message.objects.filter(
            status__in=["queued", "sending"]
        ).count(),
        "trigger runs": TriggerRun.objects.filter(
            status=TriggerRun.Status.RUNNING
        ).count(),
        "unprocessed events": PendingEvent.objects.count(),
    }
    return {what: n for what, n in counts.items() if n}


def settled() -> bool:
    return not unsettled()


def test_a_killed_worker_and_a_flushed_redis_lose_nothing_and_send_nothing_twice(
    processes, redis_of_its_own, make_workflow, customer, tmp_path
):
    outbox = tmp_path / "outbox.txt"
    processes.env.update(
        EMAIL_BACKEND="tests.esp.RecordingBackend", NUDGE_TEST_OUTBOX=str(outbox)
    )
    workflow = make_workflow("Two emails", **TWO_EMAILS)
    contacts = [customer(f"c{i}") for i in range(12)] + [
        customer("slow", email="slow@example.com")
    ]
    for contact in contacts:
        enrollment_start(workflow=workflow, contact=contact)

    # given a worker killed in the middle of a send (the ESP call hangs for slow@)
    first = processes.worker("worker-1.log")
    marker = Path(f"{outbox}.sending")
    wait_for(marker.exists, "the worker to start sending to slow@")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    # and Redis then emptied of every job and everything else (the test's own)
    django_rq.get_connection("default").flushall()

    # when a new worker and the scheduler start
    processes.worker("worker-2.log")
    processes.scheduler()
    wait_for(settled, "every enrollment and message to finish")

    # then every enrollment finished
    assert set(Enrollment.objects.values_list("status", flat=True)) == {"completed"}
    # and each email went out once, except the one cut off mid-send: uncertain, not resent
    sent = Counter(line.split()[0] for line in outbox.read_text().splitlines())
    assert all(count == 1 for count in sent.values()), sent
    cut_off = Message.objects.get(contact__email="slow@example.com", template__name="A")
    assert cut_off.status == Message.Status.UNCERTAIN
    assert cut_off.message_id_header not in sent
    others = Message.objects.exclude(pk=cut_off.pk)
    assert others.count() == 2 * len(contacts) - 1
    assert set(others.values_list("status", flat=True)) == {Message.Status.SENT}
    assert {m.message_id_header for m in others} == set(sent)


# Chaos, an action each time this many more messages have left "queued".
ACTION_EVERY = 6
CONTACTS = 60
SHOPPERS = 30


def test_chaos_of_kills_flushes_restarts_and_esp_timeouts_loses_nothing(
    processes, redis_of_its_own, make_workflow, customer, live_server, server_source
):
    # given an ESP (a Postmark stand-in over HTTP) that holds every 7th request past
    # the 1 s the senders wait: it took the message, the sender cannot know
    esp = start_postmark()
    esp.hang_every, esp.hang_seconds = 7, 3
    processes.env.update(
        # what is under test is kills and flushes losing nothing; an event killed
        # with its worker three times over is dead-lettered by design (tested in
        # apps/events), so here it gets more tries
        NUDGE_EVENT_MAX_ATTEMPTS="10",
        EMAIL_BACKEND="anymail.backends.postmark.EmailBackend",
        ANYMAIL_POSTMARK_SERVER_TOKEN=TOKEN,
        ANYMAIL_POSTMARK_API_URL=esp.url,
        ANYMAIL_REQUESTS_TIMEOUT="1",
    )
    workflow = make_workflow("Two emails", **TWO_EMAILS)
    contacts = [customer(f"k{i}") for i in range(CONTACTS)]
    for contact in contacts:
        enrollment_start(workflow=workflow, contact=contact)
    # and a site whose shoppers' add_to_cart start a workflow, sent during the chaos
    cart = make_workflow("Cart", **CART)
    shoppers = [customer(f"s{i}").external_id for i in range(SHOPPERS)]
    shop = Shop(live_server.url, server_source.key)
    # and a schedule that enrolls everyone (due at the scheduler's first look)
    schedule = make_workflow("This minute", **this_minute_once())
    workers = [processes.worker("worker-a.log"), processes.worker("worker-b.log")]
    scheduler = processes.scheduler()

    # when, as the sends go on, workers are SIGKILLed and replaced, Redis is flushed
    # and the scheduler is killed and restarted, in turn (a seeded order)
    chaos = random.Random(12)
    poll = threading.Event()
    done = Counter()
    moved_at = 0
    started = time.monotonic()
    while shoppers or not settled():
        if shoppers:
            shop.track(shoppers.pop(), "add_to_cart")
        moved = Message.objects.exclude(status=Message.Status.QUEUED).count()
        if moved - moved_at >= ACTION_EVERY:
            moved_at = moved
            action = chaos.choice(["kill worker", "flush redis", "restart scheduler"])
            if action == "kill worker":
                victim = workers.pop(chaos.randrange(len(workers)))
                processes.kill(victim)
                workers.append(processes.worker(f"worker-{sum(done.values())}.log"))
            elif action == "flush redis":
                # every job, scheduled job and worker record (the test's own
                # Redis, so FLUSHALL empties no other test run's database)
                django_rq.get_connection("default").flushall()
            else:
                processes.kill(scheduler)
                scheduler = processes.scheduler()
            done[action] += 1
        assert time.monotonic() - started < 300, f"chaos never settled: {unsettled()}"
        poll.wait(0.05)  # real processes run in real time
    esp.stop()
    shop.client.close()

    # then every event arrived once and was processed, none set aside
    assert Event.objects.filter(name="add_to_cart").count() == SHOPPERS
    assert not EventFailure.objects.exists()
    # and no enrollment was lost: every one finished, each shopper's once
    statuses = Counter(Enrollment.objects.values_list("status", flat=True))
    assert set(statuses) == {"completed"}
    assert workflow.enrollments.count() == CONTACTS
    assert cart.enrollments.count() == SHOPPERS
    assert cart.enrollments.values("contact").distinct().count() == SHOPPERS
    # and the schedule's one run enrolled every contact once
    runs = list(TriggerRun.objects.filter(workflow=schedule))
    assert [r.status for r in runs] == [TriggerRun.Status.DONE]
    by_occurrence = Counter(
        schedule.enrollments.values_list("occurrence_key", flat=True)
    )
    assert list(by_occurrence.values()) == [Contact.objects.count()]
    # and each step made one message, none left queued or failed
    messages = list(Message.objects.all())
    assert len(messages) == 2 * CONTACTS + SHOPPERS
    assert len({(m.enrollment_id, m.step_id) for m in messages}) == len(messages)
    by_status = Counter(m.status for m in messages)
    assert set(by_status) <= {Message.Status.SENT, Message.Status.UNCERTAIN}
    # and the ESP got no message twice
    received = Counter(esp.message_ids())
    assert max(received.values()) == 1, received.most_common(3)
    # and every send the ESP did not answer in time is uncertain, never sent again
    held = {r.message_id for r in esp.received if not r.answered}
    by_header = {m.message_id_header: m for m in messages}
    assert held and all(by_header[h].status == "uncertain" for h in held)
    # and every "sent" reached the ESP
    assert {m.message_id_header for m in messages if m.status == "sent"} <= set(
        received
    )
    print(
        f"\nchaos: {dict(done)}; {SHOPPERS} events over HTTP processed; "
        f"{len(runs)} schedule runs x {Contact.objects.count()} contacts; "
        f"{Enrollment.objects.count()} enrollments completed; "
        f"messages {dict(by_status)}; ESP received {len(received)}, held {len(held)}; "
        f"{time.monotonic() - started:.0f} s"
    )
    assert sum(done.values()) >= 10  # the chaos really happened
