import contextlib

import httpx
import psycopg
import pytest
from django.db import connection

from apps.contacts.models import Contact
from apps.core import hooks
from tests.processes import database_url


@contextlib.contextmanager
def _handler(handler):
    hooks.register(hooks.EVENTS_INGESTED, handler)
    try:
        yield
    finally:
        hooks._handlers[hooks.EVENTS_INGESTED].remove(handler)


def _failing_for(name: str, error: BaseException | None = None):
    def choke(*, events):
        for event in events:
            if event.name == name:
                if error is not None:  # a new one each time, with its own traceback
                    raise type(error)(*error.args)
                raise ValueError(f"cannot handle {event.name} #{event.pk}")

    return _handler(choke)


@pytest.fixture
def failing_for():
    """``with failing_for("name"):`` a real EVENTS_INGESTED handler that fails on
    events of that name (as a bug in a segment or workflow handler would);
    ``failing_for("name", error)`` raises that exception instead."""
    return _failing_for


@contextlib.contextmanager
def _contended_for(name: str):
    # given a row another connection holds locked (as a long transaction would)
    holder = Contact.objects.create(external_id="lock-holder")
    table = Contact._meta.db_table
    other = psycopg.connect(database_url())
    other.execute(f"SELECT id FROM {table} WHERE id = %s FOR UPDATE", [holder.pk])  # noqa: S608

    def wait_for_the_lock(*, events):
        if any(event.name == name for event in events):
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '50ms'")
                cursor.execute(
                    f"SELECT id FROM {table} WHERE id = %s FOR UPDATE",  # noqa: S608
                    [holder.pk],
                )

    try:
        with _handler(wait_for_the_lock):
            yield
    finally:
        other.close()


@pytest.fixture
def contended_for(require_postgres):
    """``with contended_for("name"):`` a real EVENTS_INGESTED handler that, for
    events of that name, waits for a row lock another connection holds, until
    PostgreSQL's lock_timeout gives up (LockNotAvailable, an OperationalError):
    what a deadlock or a statement timeout looks like to the handler."""
    return _contended_for


@pytest.fixture(params=["door", "django"])
def api(request):
    """Each test runs against both doors: config/wsgi.py's (the tracking calls served
    by apps/events/wsgi.py) and Django's alone (ninja, as under ASGI)."""
    server = request.getfixturevalue(
        "live_server" if request.param == "door" else "django_live_server"
    )
    # what pytest-django's helper does for a test that names live_server itself
    settings = request.getfixturevalue("settings")
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "localhost"]
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=10) as client:
        yield client
