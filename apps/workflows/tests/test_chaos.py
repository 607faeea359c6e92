"""Chaos: real worker processes, one SIGKILLed in the middle of a send, then Redis
flushed. Every enrollment still finishes, and each email goes out exactly once, or is
marked uncertain, never silently sent again."""

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import django_rq
import pytest
from django.conf import settings
from django.db import connection

from apps.campaigns.models import Message
from apps.workflows.models import Enrollment
from apps.workflows.services import enrollment_start

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[3]
DEADLINE_SECONDS = 120


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _wait_for(check, what: str) -> None:
    pause = threading.Event()
    for _ in range(DEADLINE_SECONDS * 10):
        if check():
            return
        pause.wait(0.1)  # real processes run in real time: poll, with a deadline
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture
def processes(tmp_path, require_postgres):
    outbox = tmp_path / "outbox.txt"
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "EMAIL_BACKEND": "tests.esp.RecordingBackend",
        "NUDGE_TEST_OUTBOX": str(outbox),
        "NUDGE_SENDING_TIMEOUT_SECONDS": "3",
        "NUDGE_REENQUEUE_AFTER_SECONDS": "1",
        "NUDGE_STALE_SECONDS": "2",
        # keep what the suite put there (tests/clockshift when the clock is shifted)
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
        ),
        "RQ_LOG_LEVEL": "WARNING",
    }
    started: list[subprocess.Popen] = []
    logs = []

    def start(*args: str, log: str) -> subprocess.Popen:
        logs.append(open(tmp_path / log, "w"))  # noqa: SIM115 - closed below
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            env=env,
            stdout=logs[-1],
            stderr=subprocess.STDOUT,
            start_new_session=True,  # killpg reaches the worker's scheduler process too
        )
        started.append(process)
        return process

    def worker(log: str) -> subprocess.Popen:
        return start(
            "rqworker",
            "events",
            "workflows",
            "email",
            "default",
            "--worker-class",
            "rq.worker.SimpleWorker",
            "--with-scheduler",
            log=log,
        )

    yield (
        outbox,
        worker,
        lambda: start("nudge_scheduler", "--interval", "0.5", log="scheduler.log"),
    )
    for process in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    for log in logs:
        log.close()


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
    _wait_for(marker.exists, "the worker to start sending to slow@")
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

    _wait_for(settled, "every enrollment and message to finish")

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
