"""The tracking calls' WSGI door (apps/events/wsgi.py), called as granian calls it.

What both doors do alike is tested over HTTP in test_api.py, through each; here is
what only this one has to get right: which requests it takes, the Host check, a
crash, and a database connection that died between two calls."""

import base64
import io
import json
import logging
import uuid

import psycopg
import pytest
from django.db import connection

from apps.events import wsgi
from apps.events.api import CALLS, router
from apps.events.auth import forget_cached_sources
from apps.events.models import Event

pytestmark = pytest.mark.django_db(transaction=True)


class Django:
    """Stands for Django's WSGI handler: records what the door handed on."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, environ, start_response):
        self.seen.append((environ["REQUEST_METHOD"], environ["PATH_INFO"]))
        start_response("204 No Content", [])
        return [b""]


def call(app, path, body=None, *, key="", method="POST", **headers):
    raw = json.dumps(body).encode() if body is not None else b""
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "HTTP_HOST": "localhost",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(raw),
        "CONTENT_LENGTH": str(len(raw)),
        "CONTENT_TYPE": "application/json",
        "HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{key}:".encode()).decode(),
        **headers,
    }
    answered = {}

    def start_response(status, response_headers, exc_info=None):
        answered["status"] = int(status.split()[0])
        answered["headers"] = dict(response_headers)

    body = b"".join(app(environ, start_response))
    return answered["status"], answered["headers"], body


def track(**extra):
    return {
        "event": "product_viewed",
        "anonymousId": "anon-1",
        "messageId": str(uuid.uuid4()),
        **extra,
    }


def test_it_takes_the_tracking_posts_and_hands_everything_else_to_django(
    server_source,
):
    django = Django()
    door = wsgi.TrackingDoor(django)
    status, headers, body = call(door, "/api/v1/track", track(), key=server_source.key)
    assert status == 200
    assert json.loads(body) == {"success": True, "accepted": 1, "duplicates": 0}
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    for method, path in [
        ("GET", "/api/v1/track"),
        ("OPTIONS", "/api/v1/batch"),
        ("POST", "/api/v1/track/"),
        ("POST", "/api/v1/segments/1/members"),
        ("GET", "/admin/"),
    ]:
        assert call(door, path, method=method)[0] == 204
    assert django.seen == [
        ("GET", "/api/v1/track"),
        ("OPTIONS", "/api/v1/batch"),
        ("POST", "/api/v1/track/"),
        ("POST", "/api/v1/segments/1/members"),
        ("GET", "/admin/"),
    ]


def test_it_takes_exactly_the_calls_the_ninja_routes_serve():
    posted = {
        path.strip("/")
        for path, view in router.path_operations.items()
        if any("POST" in operation.methods for operation in view.operations)
    }
    assert posted == set(CALLS)


def test_a_host_outside_allowed_hosts_gets_400(server_source):
    door = wsgi.TrackingDoor(Django())
    status, _, body = call(
        door, "/api/v1/track", track(), key=server_source.key, HTTP_HOST="evil.example"
    )
    assert status == 400
    assert "evil.example" in json.loads(body)["error"]
    assert Event.objects.count() == 0


def test_a_crash_is_a_logged_500_with_a_json_body(server_source, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(wsgi, "accept_call", broken)
    door = wsgi.TrackingDoor(Django())
    with caplog.at_level(logging.ERROR, logger="django.request"):
        status, _, body = call(door, "/api/v1/track", track(), key=server_source.key)
    assert status == 500
    assert json.loads(body) == {"error": "internal server error"}
    assert "Internal Server Error: /api/v1/track" in caplog.text


def test_a_connection_that_died_between_calls_is_replaced_and_the_call_stored(
    require_postgres, server_source, caplog
):
    door = wsgi.TrackingDoor(Django())
    assert call(door, "/api/v1/track", track(), key=server_source.key)[0] == 200
    # the connection is kept for the next call (CONN_MAX_AGE)
    assert connection.connection is not None
    dead_pid = connection.connection.info.backend_pid
    with psycopg.connect(
        **{
            k: v
            for k, v in connection.get_connection_params().items()
            if k in {"host", "port", "user", "password", "dbname"}
        },
        autocommit=True,
    ) as admin:
        # (with a timeout, PostgreSQL waits for the backend to have exited)
        admin.execute("SELECT pg_terminate_backend(%s, 10000)", [dead_pid])
    # when the next call comes, after the key's cached source expired (so the
    # first query on the dead connection is the key's)
    forget_cached_sources()
    with caplog.at_level(logging.WARNING, logger="apps.events.wsgi"):
        status, _, body = call(
            door, "/api/v1/track", track(event="second"), key=server_source.key
        )
    # then it is stored, on a new connection
    assert status == 200, body
    assert json.loads(body) == {"success": True, "accepted": 1, "duplicates": 0}
    assert Event.objects.filter(name="second").count() == 1
    assert connection.connection.info.backend_pid != dead_pid
    assert "database connection lost" in caplog.text


def test_an_allowed_origin_is_echoed_on_the_answer(browser_source):
    browser_source.allowed_origins = ["https://shop.example.com"]
    browser_source.save()
    door = wsgi.TrackingDoor(Django())
    _, headers, _ = call(
        door,
        "/api/v1/track",
        track(),
        key=browser_source.key,
        HTTP_ORIGIN="https://shop.example.com",
    )
    assert headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert headers["Vary"] == "origin"


def test_an_error_of_a_working_connection_is_not_made_again(server_source, monkeypatch):
    # a deadlock or a timeout is the call's own error: no second try
    from django.db import OperationalError

    calls = []

    def deadlocked(*args, **kwargs):
        calls.append(1)
        raise OperationalError("deadlock detected")

    door = wsgi.TrackingDoor(Django())
    assert call(door, "/api/v1/track", track(), key=server_source.key)[0] == 200
    monkeypatch.setattr(wsgi, "accept_call", deadlocked)
    status, _, _ = call(door, "/api/v1/track", track(), key=server_source.key)
    assert status == 500
    assert calls == [1]


def _terminate(pid: int) -> None:
    """End a PostgreSQL backend from another connection, as a crash or a network
    cut would (PostgreSQL waits up to 10 s for it to have exited)."""
    with psycopg.connect(
        **{
            k: v
            for k, v in connection.get_connection_params().items()
            if k in {"host", "port", "user", "password", "dbname"}
        },
        autocommit=True,
    ) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 10000)", [pid])


def test_a_call_without_message_id_whose_commit_lost_its_answer_is_stored_once(
    require_postgres, server_source, monkeypatch
):
    # given a known sender, and a connection that dies once the call's events are
    # committed, before the answer comes back
    from apps.core.db import postgres_cursor
    from apps.events import ingestion

    door = wsgi.TrackingDoor(Django())
    assert call(door, "/api/v1/track", track(), key=server_source.key)[0] == 200
    insert = ingestion.insert_events
    lost = []

    def insert_then_lose_the_connection(records):
        stored = insert(records)
        if not lost:
            lost.append(connection.connection.info.backend_pid)
            _terminate(lost[0])
            with postgres_cursor() as cursor:
                cursor.execute("SELECT 1")  # the answer that never comes
        return stored

    monkeypatch.setattr(ingestion, "insert_events", insert_then_lose_the_connection)
    # when a call with neither messageId nor timestamp comes
    untimed = {"event": "untimed", "anonymousId": "anon-1"}
    status, _, body = call(door, "/api/v1/track", untimed, key=server_source.key)
    # then the door made it again on a new connection, and the again is a duplicate
    assert lost, "the connection was not lost"
    assert status == 200, body
    assert json.loads(body) == {"success": True, "accepted": 0, "duplicates": 1}
    assert Event.objects.filter(name="untimed").count() == 1
