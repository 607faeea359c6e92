"""Chaos: real worker processes, one SIGKILLed in the middle of a send, then Redis
flushed. Every enrollment still finishes, and each email goes out exactly once, or is
marked uncertain, never silently sent again."""

import signal
from collections import Counter
from pathlib import Path

import django_rq
import pytest

from apps.campaigns.models import Message
from apps.workflows.models import Enrollment
from apps.workflows.services import enrollment_start

from .conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_killed_worker_and_a_flushed_redis_lose_nothing_and_send_nothing_twice(
    processes, make_workflow, customer
):
    outbox, worker, scheduler = processes
    workflow = make_workflow(
        "Two emails",
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
    contacts = [customer(f"c{i}") for i in range(12)] + [
        customer("slow", email="slow@example.com")
    ]
    for contact in contacts:
        enrollment_start(workflow=workflow, contact=contact)

    # given a worker killed in the middle of a send (the ESP call hangs for slow@)
    first = worker("worker-1.log")
    marker = Path(f"{outbox}.sending")
    wait_for(marker.exists, "the worker to start sending to slow@")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    # and Redis then emptied of every job (our database of it)
    django_rq.get_connection("default").flushdb()

    # when a new worker and the scheduler start
    worker("worker-2.log")
    scheduler()

    def settled() -> bool:
        running = Enrollment.objects.filter(status__in=Enrollment.RUNNING).exists()
        pending = Message.objects.filter(status__in=["queued", "sending"]).exists()
        return not running and not pending

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
