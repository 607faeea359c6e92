"""Scenario tests drive Nudge as a shop would: events over real HTTP, emails out
through Anymail's test backend, and the clock moved instead of waited for."""

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection

from apps.campaigns.models import EmailTemplate
from apps.contacts.models import Contact
from apps.core import clock
from apps.workflows.models import Workflow
from apps.workflows.services import workflow_activate, workflow_create

START = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def frozen_clock():
    with clock.frozen(START):
        yield


class Shop:
    """A site sending events to Nudge over HTTP with its server key."""

    def __init__(self, url: str, key: str) -> None:
        self.client = httpx.Client(base_url=f"{url}/api/v1", auth=(key, ""), timeout=10)

    def track(
        self,
        user: str,
        event: str,
        *,
        timestamp: dt.datetime | None = None,
        **properties,
    ) -> None:
        """A track call; ``timestamp``: when it happened, if not now (a late batch)."""
        message = {
            "userId": user,
            "event": event,
            "properties": properties,
            "messageId": str(uuid.uuid4()),
        }
        if timestamp is not None:
            message["timestamp"] = timestamp.isoformat()
        response = self.client.post("/track", json=message)
        assert response.status_code == 200, response.text

    def identify(self, user: str, **traits) -> None:
        response = self.client.post(
            "/identify",
            json={
                "userId": user,
                "traits": traits,
                "messageId": str(uuid.uuid4()),
            },
        )
        assert response.status_code == 200, response.text


@pytest.fixture
def shop(live_server, server_source, frozen_clock):
    shop = Shop(live_server.url, server_source.key)
    yield shop
    shop.client.close()


@pytest.fixture
def templates(layout):
    made = {}
    for name in (
        "Cart reminder",
        "Welcome",
        "Tips",
        "Nudge",
        "Birthday",
        "Win back",
        "A",
        "B",
        "Browse",
    ):
        made[name] = EmailTemplate.objects.create(
            name=name,
            subject=f"{name} for {{{{ contact.first_name | default: 'you' }}}}",
            html_body=f"<p>{name}</p>{{% if event.properties.cart_id %}}<p>cart {{{{ event.properties.cart_id }}}}</p>{{% endif %}}",
            layout=layout,
        )
    return made


@pytest.fixture
def make_workflow(templates):
    def make(name: str, activate: bool = True, **definition) -> Workflow:
        definition.setdefault("reentry", {"rule": "every_time"})
        workflow = workflow_create(name=name, definition=definition)
        if activate:
            workflow_activate(workflow=workflow)
        return workflow

    return make


def emails_to(outbox, email: str) -> list[str]:
    return [m.subject for m in outbox if m.to == [email]]


@pytest.fixture
def customer(db):
    def make(user: str, **fields) -> Contact:
        fields.setdefault("email", f"{user}@example.com")
        return Contact.objects.create(external_id=user, **fields)

    return make


# -- real worker processes ------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[3]
DEADLINE_SECONDS = 120
ALL_QUEUES = ("events", "workflows", "email", "default")


def wait_for(check, what: str) -> None:
    """Poll ``check`` until it holds: real processes run in real time."""
    pause = threading.Event()
    for _ in range(DEADLINE_SECONDS * 10):
        if check():
            return
        pause.wait(0.1)
    raise AssertionError(f"gave up waiting for {what}")


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def processes(tmp_path, require_postgres):
    """(outbox file, worker(log, queues=...), scheduler()): start real RQ workers
    (SimpleWorker) and the scheduler on the test database; all killed at the end."""
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
        "PYTHONPATH": str(ROOT),
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

    def worker(log: str, queues: tuple[str, ...] = ALL_QUEUES) -> subprocess.Popen:
        return start(
            "rqworker",
            *queues,
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
