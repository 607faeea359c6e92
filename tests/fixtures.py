"""Shared pytest fixtures (loaded with -p tests.fixtures from pyproject.toml).

Tests use the real PostgreSQL and Redis named by DATABASE_URL / REDIS_URL (CI sets
both); without them, SQLite and the embedded Redis that scripts/nudge.py test starts.
Where a test needs something absent here (PostgreSQL, Chromium) it skips with the
reason, except under CI, where a missing requirement is a failure.
"""

import contextlib
import os
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

IN_CI = bool(os.environ.get("CI"))
CHROMIUM = "/usr/bin/chromium"


def _shift_clock_everywhere() -> None:
    """NUDGE_TEST_CLOCK_SHIFT_DAYS=365 runs the suite a year ahead (as .ci/run does):
    here, and in every Python process the tests start (through PYTHONPATH)."""
    if not os.environ.get("NUDGE_TEST_CLOCK_SHIFT_DAYS"):
        return
    folder = str(Path(__file__).resolve().parent / "clockshift")
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if folder not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([folder, *paths])
    from tests.clockshift.sitecustomize import shift_clock  # shifts, once

    shift_clock()


_shift_clock_everywhere()


def _redis_db_of_this_worker() -> None:
    """Under pytest-xdist (``-n 2``), each worker process its own Redis db: the
    tests flush theirs. (Each has its own test database already: pytest-django
    names it after the worker.) Set before Django reads its settings; the
    processes a test starts inherit it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    url = os.environ.get("REDIS_URL", "")
    if not worker.startswith("gw") or not url:
        return
    n = int(worker.removeprefix("gw"))
    parts = urlsplit(url)
    if parts.scheme == "unix":  # the embedded Redis: db in the query
        query = dict(parse_qsl(parts.query))
        base = int(query.get("db", 0))
        query["db"] = str(base + n)
        os.environ["REDIS_URL"] = f"unix://{parts.path}?{urlencode(query)}"
    else:
        base = int(parts.path.strip("/") or 0)
        os.environ["REDIS_URL"] = urlunsplit(parts._replace(path=f"/{base + n}"))


_redis_db_of_this_worker()

# The suite runs with DEBUG off, as production does, so the processes it starts
# (workers, the scheduler) would refuse the built-in development key (nudge.E001).
# Set before Django reads its settings; they inherit it, and sign as the tests do.
os.environ.setdefault("SECRET_KEY", "nudge-test-suite-key-not-a-secret-" + "x" * 20)


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI must run every test)")
    pytest.skip(reason)


@pytest.fixture
def require_postgres(db):
    from django.db import connection

    if connection.vendor != "postgresql":
        _missing("needs PostgreSQL: set DATABASE_URL=postgres://...")


# Ticks fast enough for a test to watch the guarantees work in seconds.
FAST_TICKS = {
    "NUDGE_SENDING_TIMEOUT_SECONDS": "3",
    "NUDGE_REENQUEUE_AFTER_SECONDS": "1",
    "NUDGE_STALE_SECONDS": "2",
    # an event whose attempt died with its worker is tried again this soon
    "NUDGE_EVENT_RETRY_SECONDS": "1,2",
    # a job whose worker was killed counts as dead this soon (plus 10 s)
    "RQ_JOB_TIMEOUT": "10",
}


@pytest.fixture
def processes(tmp_path, require_postgres):
    """Real RQ workers (SimpleWorker) and schedulers on the test database
    (tests/processes.py), for any app's tests; all SIGKILLed at the end."""
    from tests.processes import Processes

    started = Processes(tmp_path, **FAST_TICKS)
    yield started
    started.stop_all()


@pytest.fixture
def redis_of_its_own(processes, settings):
    """This test's own Redis server, for the test and the processes it starts
    (tests/processes.py own_redis): it may FLUSHALL it. Its URL."""
    from tests.processes import own_redis

    with own_redis() as url:
        settings.REDIS_URL = url
        settings.RQ_QUEUES = {
            name: {**config, "URL": url} for name, config in settings.RQ_QUEUES.items()
        }
        settings.CACHES = {
            name: {**config, "LOCATION": url}
            for name, config in settings.CACHES.items()
        }
        processes.env["REDIS_URL"] = url
        yield url
        processes.stop_all()  # before its Redis goes


@pytest.fixture(scope="session")
def chromium_path():
    if not os.path.exists(CHROMIUM) and not shutil.which("chromium"):
        _missing("needs Debian's chromium at /usr/bin/chromium")
    return CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")


class InFlight:
    """What a live server still has to serve, so a test can wait for all of it
    before the database is flushed under it (a browser's last beacon can arrive as
    its page closes): connections not yet accepted (the listening socket's queue,
    read from /proc), connections open, and requests in the WSGI app."""

    def __init__(self, app) -> None:
        self.app = app
        self.active = 0  # requests in the app
        self.connections = 0  # accepted, not yet closed
        self.port: int | None = None
        self.changed = threading.Condition()

    def __call__(self, environ, start_response):
        self._move(requests=+1)
        try:
            result = self.app(environ, start_response)
        except BaseException:
            self._move(requests=-1)
            raise
        return _Closing(result, lambda: self._move(requests=-1))

    def watch(self, httpd) -> None:
        """Count the server's connections from accept to close. The accept and the
        count happen under the lock wait_idle looks under, so a connection is
        always in the listening queue or counted, never between."""
        self.port = httpd.server_address[1]
        accept, shutdown = httpd.get_request, httpd.shutdown_request

        def get_request():
            with self.changed:  # select() said one is waiting: accept returns at once
                request = accept()
                self.connections += 1
                return request

        def shutdown_request(request):
            try:
                shutdown(request)
            finally:
                self._move(connections=-1)

        httpd.get_request, httpd.shutdown_request = get_request, shutdown_request

    def _move(self, *, requests: int = 0, connections: int = 0) -> None:
        with self.changed:
            self.active += requests
            self.connections += connections
            self.changed.notify_all()

    def _waiting_to_be_accepted(self) -> int:
        """Connections in the listening socket's accept queue (Linux: a listening
        socket's rx_queue in /proc/net/tcp*)."""
        waiting = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError), open(table) as rows:
                for row in list(rows)[1:]:
                    fields = row.split()
                    port = int(fields[1].rsplit(":", 1)[1], 16)
                    if port == self.port and fields[3] == "0A":  # LISTEN
                        waiting += int(fields[4].split(":")[1], 16)
        return waiting

    def wait_idle(self, *, timeout: float = 15) -> None:
        """Until nothing is queued, connected or in flight (after a closed browser
        context has closed its connections)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.active or self.connections or self._waiting_to_be_accepted():
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"the live server still had {self.active} requests in "
                        f"flight and {self.connections} connections open"
                    )
                self.changed.wait(0.05)


class _Closing:
    """A WSGI response that calls ``done`` once the server has closed it."""

    def __init__(self, result, done) -> None:
        self.result, self.done = result, done

    def __iter__(self):
        return iter(self.result)

    def close(self) -> None:
        try:
            if hasattr(self.result, "close"):
                self.result.close()
        finally:
            self.done()


def _live_server(request, *, door: bool):
    from pytest_django.live_server_helper import LiveServer

    addr = (
        request.config.getvalue("liveserver")
        or os.environ.get("DJANGO_LIVE_TEST_SERVER_ADDRESS")
        or "localhost"
    )
    server = LiveServer(addr, start=False)
    static_handler = server.thread.static_handler
    if door:
        from apps.events.wsgi import TrackingDoor

        # LiveServerThread wraps Django's handler in this; config/wsgi.py's door
        # goes around it, as in production.
        def wrap(app):
            return TrackingDoor(static_handler(app))
    else:
        wrap = static_handler
    server.in_flight = None

    def counted(app):
        server.in_flight = InFlight(wrap(app))
        return server.in_flight

    server.thread.static_handler = counted
    server.start()
    server.in_flight.watch(server.thread.httpd)
    return server


@pytest.fixture(scope="session")
def live_server(request):
    """pytest-django's live server, serving what config/wsgi.py serves: the tracking
    calls' own door in front of Django."""
    server = _live_server(request, door=True)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def django_live_server(request):
    """A live server of Django alone (as under ASGI): every call through ninja. Its
    tests need the database as live_server's do: django_db(transaction=True)."""
    server = _live_server(request, door=False)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _empty_redis():
    """Every test starts with empty queues (and no rate-limit counters)."""
    import django_rq

    connection_ = django_rq.get_connection("default")
    connection_.flushdb()
    yield


@pytest.fixture(autouse=True)
def _fresh_source_cache():
    from apps.events.auth import forget_cached_sources

    forget_cached_sources()
    yield
    forget_cached_sources()


def burst_worker(queues: list[str]):
    """A real RQ SimpleWorker over ``queues`` for this process (``work(burst=True)``)."""
    import django_rq
    from rq import SimpleWorker

    class BurstWorker(SimpleWorker):
        # No pubsub channel (it carries admin commands to long-lived workers): with
        # redis-py 8 stopping its listener thread waits out RQ's 60 s poll whenever
        # the unsubscribe reply is read before the stop, so a test took a minute.
        def subscribe(self) -> None:
            pass

    return BurstWorker(
        [django_rq.get_queue(name) for name in queues],
        connection=django_rq.get_connection("default"),
    )


@pytest.fixture
def run_jobs():
    """Run every queued job in this process with a real RQ SimpleWorker, until empty."""
    import django_rq
    from django.conf import settings
    from django.db import connection

    def commit_pending() -> bool:
        # Inside a `db` test the transaction never commits, so on_commit callbacks
        # (our enqueues) would never run; run them as a commit would.
        callbacks = list(connection.run_on_commit)
        connection.run_on_commit.clear()
        for _sids, callback, _robust in callbacks:
            callback()
        return bool(callbacks)

    def move_scheduled(names: list[str]) -> bool:
        # RQ's scheduler moves enqueue_at jobs by the real clock; tests move our clock
        # instead, so do its work by that one.
        from rq.job import Job

        from apps.core import clock

        moved = False
        timestamp = int(clock.now().timestamp())
        for name in names:
            queue = django_rq.get_queue(name)
            registry = queue.scheduled_job_registry
            for job_id in registry.get_jobs_to_schedule(timestamp):
                job = Job.fetch(job_id, connection=queue.connection)
                registry.remove(job_id)
                queue._enqueue_job(job)
                moved = True
        return moved

    def run(queues: list[str] | None = None) -> int:
        names = queues or settings.NUDGE_QUEUES
        move_scheduled(names)
        worker = burst_worker(names)
        rounds = 0
        while (
            commit_pending()
            or move_scheduled(names)
            or any(django_rq.get_queue(n).count for n in names)
        ):
            worker.work(burst=True, logging_level="WARNING")
            rounds += 1
        return rounds

    return run


@pytest.fixture
def browser_source(db):
    from apps.events.services import source_create

    source, key = source_create(name="Web")
    source.key = key
    return source


@pytest.fixture
def server_source(db):
    from apps.events.models import Source
    from apps.events.services import source_create

    source, key = source_create(name="Backend", kind=Source.Kind.SERVER)
    source.key = key
    return source


@pytest.fixture
def outbox(settings):
    """Email goes to Anymail's test backend (the ESP boundary); returns the outbox."""
    from django.core import mail

    settings.MAILERS = {"default": {"BACKEND": "tests.esp.FlakyEspBackend"}}
    mail.outbox = []
    return mail.outbox


@pytest.fixture
def layout(db):
    from apps.campaigns.models import EmailLayout

    return EmailLayout.objects.create(
        name="Test layout",
        html="<html><body><div>{{ content }}</div><footer>{{ company.address }} "
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a></footer></body></html>',
    )


@pytest.fixture
def template(layout):
    from apps.campaigns.models import EmailTemplate

    return EmailTemplate.objects.create(
        name="Cart reminder",
        subject="{{ contact.first_name | default: 'Hi' }}, your cart is waiting",
        html_body="<p>Hello {{ contact.first_name }}</p>"
        "{% if event.properties.cart_id %}<p>Cart {{ event.properties.cart_id }}</p>"
        "{% endif %}",
        layout=layout,
        tags=["cart"],
    )


@pytest.fixture
def contact(db):
    from apps.contacts.models import Contact

    return Contact.objects.create(
        email="ada@example.com", first_name="Ada", timezone="Europe/London"
    )


@pytest.fixture
def settle(run_jobs):
    """Run every job that is due, the way workers and the scheduler tick would."""
    from apps.core.scheduler import tick

    def run() -> None:
        for _ in range(10):
            run_jobs()
            results = tick() or {}
            if not any(v > 0 for v in results.values()):
                run_jobs()
                return
        run_jobs()

    return run


@pytest.fixture
def later(settle):
    """Move the (frozen) clock forward and let whatever became due run."""
    import datetime as dt

    from apps.core import clock

    def move(**delta) -> None:
        clock.advance(dt.timedelta(**delta))
        settle()

    return move
