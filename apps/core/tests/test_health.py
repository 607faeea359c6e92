"""/healthz: ok / not ok for anyone; the details for staff or the health token; no
exception text for outsiders; a Redis that refuses CONFIG is still healthy."""

import socket

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.processes import own_redis

TOKEN = "health-token-for-the-monitor"


@pytest.fixture
def staff_client(client, db):
    client.force_login(User.objects.create_user("ops", is_staff=True))
    return client


def _point_rq_at(settings, url: str) -> None:
    settings.REDIS_URL = url
    settings.RQ_QUEUES = {
        name: {**config, "URL": url} for name, config in settings.RQ_QUEUES.items()
    }


@pytest.fixture
def redis_that_does_not_answer(settings):
    """A port nothing listens on: connections are refused, for real."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _point_rq_at(settings, f"redis://127.0.0.1:{port}/0")


@pytest.fixture
def redis_refusing_config(settings):
    """A Redis that refuses CONFIG, as managed Redis services do."""
    with own_redis("--rename-command", "CONFIG", "") as url:
        _point_rq_at(settings, url)
        yield url


def test_anyone_gets_only_ok(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_anyone_gets_not_ok_without_the_error_text(
    client, db, redis_that_does_not_answer
):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "error"}


def test_staff_get_the_details_and_the_error(staff_client, redis_that_does_not_answer):
    response = staff_client.get("/healthz")
    report = response.json()
    assert response.status_code == 503
    assert report["database"]["ok"] is True
    assert report["redis"]["ok"] is False
    assert report["redis"]["error"].startswith("ConnectionError")


def test_staff_get_the_queues_and_backlog(staff_client):
    report = staff_client.get("/healthz").json()
    assert report["status"] == "ok"
    assert set(report["redis"]["queues"]) == {"events", "workflows", "email", "default"}
    assert "events" in report["backlog"]
    assert "events" in report["dead_letters"]


def test_the_health_token_gets_the_details(client, db, settings):
    settings.NUDGE_HEALTH_TOKEN = TOKEN
    response = client.get("/healthz", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert "queues" in response.json()["redis"]


@pytest.mark.parametrize("configured", [TOKEN, ""], ids=["another", "none set"])
def test_a_wrong_bearer_token_is_refused(client, db, settings, configured):
    settings.NUDGE_HEALTH_TOKEN = configured
    response = client.get("/healthz", headers={"Authorization": "Bearer guess"})
    assert response.status_code == 401
    assert "NUDGE_HEALTH_TOKEN" in response.json()["error"]


def test_a_redis_that_refuses_config_is_healthy(
    staff_client, client, redis_refusing_config
):
    # given a Redis that answers everything but CONFIG
    # when staff ask
    response = staff_client.get("/healthz")
    report = response.json()
    # then it is up, with its eviction policy unknown rather than an error
    assert response.status_code == 200, report
    assert report["redis"]["ok"] is True
    assert report["redis"]["maxmemory_policy"] is None
    assert report["status"] == "ok"
    # and anyone gets ok too
    client.logout()
    assert client.get("/healthz").status_code == 200


def test_an_evicting_redis_is_warned_about(staff_client, settings):
    with own_redis("--maxmemory-policy", "allkeys-lru") as url:
        _point_rq_at(settings, url)
        report = staff_client.get("/healthz").json()
    assert report["redis"]["maxmemory_policy"] == "allkeys-lru"
    assert report["status"] == "warning"
    assert any("noeviction" in warning for warning in report["warnings"])


@pytest.fixture
def probe_registered():
    """Register a backlog probe for the test (apps register theirs in ready())."""
    from apps.core import health

    added = []

    def register(name, probe):
        health.register_backlog(name, probe)
        added.append(name)

    yield register
    for name in added:
        health._probes.pop(name, None)


def test_anyone_asks_only_the_two_stores_not_the_backlog(
    client, staff_client, probe_registered
):
    asked = []
    probe_registered("watched", lambda now: asked.append(now) or (0, None))
    assert Client().get("/healthz").json() == {"status": "ok"}
    assert asked == []  # nothing an outsider can make expensive
    assert staff_client.get("/healthz").json()["backlog"]["watched"]["due"] == 0
    assert len(asked) == 1


def test_a_probe_that_fails_is_reported_not_a_500(staff_client, probe_registered):
    def broken(now):
        raise RuntimeError("the table is gone")

    probe_registered("broken", broken)
    response = staff_client.get("/healthz")
    assert response.status_code == 200
    report = response.json()
    assert report["status"] == "warning"
    assert report["backlog"]["broken"] == {"error": "RuntimeError: the table is gone"}
    assert any("broken probe failed" in warning for warning in report["warnings"])
