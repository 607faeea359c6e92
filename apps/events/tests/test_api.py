"""The tracking API over real HTTP, as a Segment library would call it."""

import datetime as dt
import gzip
import json
import uuid

import django_rq
import pytest

from apps.contacts.models import Contact
from apps.events.models import Event
from apps.events.selectors import is_pending

pytestmark = pytest.mark.django_db(transaction=True)


def track(event="product_viewed", anonymous_id="anon-1", **extra):
    return {
        "type": "track",
        "event": event,
        "anonymousId": anonymous_id,
        "messageId": str(uuid.uuid4()),
        "properties": {"product_id": "sku-1", "price": 10},
        **extra,
    }


def test_a_track_call_is_stored_and_processed(api, browser_source, run_jobs):
    # when
    response = api.post("/track", json=track(), auth=(browser_source.key, ""))
    # then
    assert response.status_code == 200
    assert response.json() == {"success": True, "accepted": 1, "duplicates": 0}
    event = Event.objects.get()
    assert event.name == "product_viewed"
    assert event.properties == {"product_id": "sku-1", "price": 10}
    assert event.context["ip"] == "127.0.0.0"  # anonymised (NUDGE_ANONYMISE_IP)
    assert is_pending(event.pk)
    run_jobs()
    event.refresh_from_db()
    assert not is_pending(event.pk)
    assert event.contact.last_seen_at == event.timestamp


def test_a_batch_enqueues_one_job_for_all_its_events(api, browser_source):
    batch = [track(anonymous_id=f"anon-{i % 7}") for i in range(100)]
    response = api.post("/batch", json={"batch": batch}, auth=(browser_source.key, ""))
    assert response.status_code == 200
    assert response.json()["accepted"] == 100
    assert Event.objects.count() == 100
    assert Contact.objects.count() == 7
    assert django_rq.get_queue("events").count == 1


def test_a_repeated_message_id_is_accepted_and_changes_nothing(api, server_source):
    message = {
        "type": "identify",
        "userId": "u-1",
        "messageId": "m-1",
        "traits": {"email": "ada@example.com", "plan": "free"},
    }
    assert (
        api.post("/identify", json=message, auth=(server_source.key, "")).status_code
        == 200
    )
    # when the same messageId comes again, with different traits
    message["traits"]["plan"] = "pro"
    response = api.post("/identify", json=message, auth=(server_source.key, ""))
    # then
    assert response.status_code == 200
    assert response.json() == {"success": True, "accepted": 0, "duplicates": 1}
    assert Event.objects.count() == 1
    assert Contact.objects.get().attributes == {"plan": "free"}


def test_an_invalid_batch_writes_nothing_and_says_which_field(api, browser_source):
    batch = [track(), track(), {"type": "track", "anonymousId": "a"}]  # no event name
    response = api.post("/batch", json={"batch": batch}, auth=(browser_source.key, ""))
    assert response.status_code == 400
    body = response.json()
    assert body["detail"] == [{"field": "batch[2].event", "message": "Field required"}]
    assert "batch[2].event" in body["error"]
    assert Event.objects.count() == 0
    assert Contact.objects.count() == 0
    assert django_rq.get_queue("events").count == 0


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"event": "x"}, "body"),  # neither userId nor anonymousId
        ({"event": "", "anonymousId": "a"}, "event"),
        ({"event": "x", "anonymousId": "a", "properties": [1]}, "properties"),
        ({"event": "x", "anonymousId": "a", "timestamp": "yesterday"}, "timestamp"),
    ],
)
def test_invalid_single_calls_get_400_naming_the_field(
    api, browser_source, payload, field
):
    response = api.post("/track", json=payload, auth=(browser_source.key, ""))
    assert response.status_code == 400
    assert response.json()["detail"][0]["field"].startswith(field)
    assert Event.objects.count() == 0


def test_malformed_json_gets_400(api, browser_source):
    response = api.post(
        "/track",
        content=b"{not json",
        auth=(browser_source.key, ""),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


def test_an_identify_with_a_bad_email_is_refused(api, browser_source):
    message = {"anonymousId": "a", "traits": {"email": "not-an-email"}}
    response = api.post("/identify", json=message, auth=(browser_source.key, ""))
    assert response.status_code == 400
    assert "not an email address" in response.json()["error"]


def test_unknown_missing_and_disabled_keys_get_401(api, browser_source):
    assert api.post("/track", json=track(), auth=("pk_nope", "")).status_code == 401
    assert api.post("/track", json=track()).status_code == 401
    browser_source.enabled = False
    browser_source.save()
    from apps.events.auth import forget_cached_sources

    forget_cached_sources()
    response = api.post("/track", json=track(), auth=(browser_source.key, ""))
    assert response.status_code == 401
    assert "disabled" in response.json()["error"]
    assert Event.objects.count() == 0


def test_the_write_key_may_come_in_a_text_plain_body_like_a_beacon(api, browser_source):
    body = {"writeKey": browser_source.key, "batch": [track()]}
    response = api.post(
        "/b", content=json.dumps(body), headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 200
    assert Event.objects.count() == 1


def test_gzip_bodies_are_accepted(api, browser_source):
    body = gzip.compress(json.dumps({"batch": [track(), track()]}).encode())
    response = api.post(
        "/batch",
        content=body,
        auth=(browser_source.key, ""),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert Event.objects.count() == 2


def test_short_paths_work_like_the_long_ones(api, server_source):
    auth = (server_source.key, "")
    assert api.post("/t", json=track(anonymous_id="a"), auth=auth).status_code == 200
    assert (
        api.post("/p", json={"anonymousId": "a", "name": "Home"}, auth=auth).status_code
        == 200
    )
    assert (
        api.post("/s", json={"anonymousId": "a", "name": "Cart"}, auth=auth).status_code
        == 200
    )
    assert (
        api.post("/g", json={"userId": "u", "groupId": "acme"}, auth=auth).status_code
        == 200
    )
    assert (
        api.post("/i", json={"userId": "u", "traits": {}}, auth=auth).status_code == 200
    )
    assert (
        api.post("/a", json={"previousId": "a", "userId": "u"}, auth=auth).status_code
        == 200
    )
    names = sorted(Event.objects.values_list("name", flat=True))
    assert names == ["alias", "group", "identify", "page", "product_viewed", "screen"]
    page = Event.objects.get(name="page")
    assert page.properties == {"name": "Home"}
    # a, then u, then the alias joining them: one person
    assert Contact.objects.count() == 1


def test_an_event_over_32_kb_gets_413(api, browser_source):
    big = track(properties={"blob": "x" * 33_000})
    assert (
        api.post("/track", json=big, auth=(browser_source.key, "")).status_code == 413
    )
    response = api.post(
        "/batch", json={"batch": [track(), big]}, auth=(browser_source.key, "")
    )
    assert response.status_code == 413
    assert "batch[1]" in response.json()["error"]
    assert Event.objects.count() == 0


def test_a_batch_over_500_kb_gets_413(api, browser_source):
    batch = [track(properties={"blob": "x" * 20_000}) for _ in range(30)]
    response = api.post("/batch", json={"batch": batch}, auth=(browser_source.key, ""))
    assert response.status_code == 413
    assert Event.objects.count() == 0


def test_a_gzip_bomb_gets_413_without_inflating_it_all(api, browser_source):
    bomb = gzip.compress(b'{"batch": [' + b" " * 50_000_000 + b"]}")
    response = api.post(
        "/batch",
        content=bomb,
        auth=(browser_source.key, ""),
        headers={"Content-Encoding": "gzip"},
    )
    assert response.status_code == 413


def test_bursts_over_the_rate_limit_get_429(api, browser_source):
    browser_source.rate_limit_per_second = 3
    browser_source.save()
    statuses = [
        api.post("/track", json=track(), auth=(browser_source.key, "")).status_code
        for _ in range(8)
    ]
    assert 429 in statuses
    assert statuses.count(200) >= 3
    assert Event.objects.count() == statuses.count(200)


def test_cors_preflight_is_allowed_for_a_sources_origins_only(api, browser_source):
    browser_source.allowed_origins = ["https://shop.example.com"]
    browser_source.save()
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    ok = api.options(
        "/batch", headers={"Origin": "https://shop.example.com", **preflight}
    )
    assert ok.headers["access-control-allow-origin"] == "https://shop.example.com"
    other = api.options(
        "/batch", headers={"Origin": "https://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in other.headers
    # and the key itself refuses a page on another origin
    response = api.post(
        "/track",
        json=track(),
        auth=(browser_source.key, ""),
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert Event.objects.count() == 0


def test_the_timestamp_is_corrected_for_the_senders_clock_skew(api, browser_source):
    # given a client whose clock runs one hour fast
    client_now = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    message = track(
        timestamp=(client_now - dt.timedelta(minutes=5)).isoformat(),
        sentAt=client_now.isoformat(),
    )
    # when
    api.post("/track", json=message, auth=(browser_source.key, ""))
    # then the event happened about five minutes before it arrived
    event = Event.objects.get()
    lag = event.received_at - event.timestamp
    assert (
        dt.timedelta(minutes=4, seconds=50) < lag < dt.timedelta(minutes=5, seconds=10)
    )


def test_the_openapi_docs_describe_the_api(api):
    assert api.get("/docs").status_code == 200
    schema = api.get("/openapi.json").json()
    assert {"/api/v1/track", "/api/v1/batch", "/api/v1/identify"} <= set(
        schema["paths"]
    )
    assert "/api/v1/t" not in schema["paths"]


def test_nulls_and_numeric_ids_are_accepted_as_segment_libraries_send_them(
    api, server_source
):
    message = {"event": "x", "userId": 12345, "messageId": None, "anonymousId": None}
    response = api.post("/track", json=message, auth=(server_source.key, ""))
    assert response.status_code == 200
    assert Contact.objects.get().external_id == "12345"
    assert Event.objects.get().message_id.startswith("nudge-")


def test_a_call_without_a_message_id_sent_again_is_a_duplicate(api, server_source):
    # given a hand-written client's call, with no messageId
    message = {
        "userId": "u-1",
        "event": "order_completed",
        "timestamp": "2026-11-02T10:00:00Z",
        "sentAt": "2026-11-02T10:00:01Z",
        "properties": {"total": 42},
    }
    first = api.post("/track", json=message, auth=(server_source.key, ""))
    # when it sends the call again after losing the answer (re-stamping sentAt)
    again = api.post(
        "/track",
        json={**message, "sentAt": "2026-11-02T10:00:31Z"},
        auth=(server_source.key, ""),
    )
    # then the second is a duplicate: one event
    assert first.json() == {"success": True, "accepted": 1, "duplicates": 0}
    assert again.json() == {"success": True, "accepted": 0, "duplicates": 1}
    assert Event.objects.count() == 1


def test_a_batch_without_message_ids_sent_again_stores_nothing_new(api, browser_source):
    batch = [
        {"type": "track", "anonymousId": "a", "event": "viewed", "timestamp": ts}
        for ts in ("2026-11-02T10:00:00Z", "2026-11-02T10:00:05Z")
    ]
    auth = (browser_source.key, "")
    first = api.post(
        "/batch", json={"batch": batch, "sentAt": "2026-11-02T10:00:06Z"}, auth=auth
    )
    again = api.post(
        "/batch", json={"batch": batch, "sentAt": "2026-11-02T10:01:00Z"}, auth=auth
    )
    assert first.json()["accepted"] == 2
    assert again.json() == {"success": True, "accepted": 0, "duplicates": 2}
    assert Event.objects.count() == 2


def test_different_calls_without_message_ids_are_different_events(api, server_source):
    base = {
        "userId": "u-1",
        "event": "order_completed",
        "timestamp": "2026-11-02T10:00:00Z",
    }
    auth = (server_source.key, "")
    api.post("/track", json={**base, "properties": {"total": 1}}, auth=auth)
    api.post("/track", json={**base, "properties": {"total": 2}}, auth=auth)
    api.post("/track", json={**base, "timestamp": "2026-11-02T10:00:01Z"}, auth=auth)
    api.post("/track", json={**base, "userId": "u-2"}, auth=auth)
    # and calls with no time of their own are told apart by when they arrived
    untimed = {"userId": "u-1", "event": "ping"}
    api.post("/track", json=untimed, auth=auth)
    batched = {"type": "track", **untimed}
    api.post("/batch", json={"batch": [batched, batched]}, auth=auth)
    assert Event.objects.filter(name="order_completed").count() == 4
    assert Event.objects.filter(name="ping").count() == 3


@pytest.fixture
def rudderstack(api):
    """RudderStack's Python SDK for a key, sending each call at once to the server."""
    from rudderstack.analytics import Client, request

    # it posts to <host>/v1/batch
    host = str(api.base_url).rstrip("/").removesuffix("/v1")
    yield lambda key: Client(key, host=host, sync_mode=True, max_retries=0)
    # Its one HTTP session (module-wide) keeps connections alive, and the live
    # server a thread, with its database connection, for each.
    request._session.close()


def test_rudderstack_identify_traits_in_context_reach_the_contact(
    rudderstack, server_source
):
    # when RudderStack's SDK identifies someone (it sends the traits in
    # context.traits only)
    rudderstack(server_source.key).identify(
        user_id="u-1",
        traits={"email": "Ada@Example.com", "firstName": "Ada", "plan": "pro"},
    )
    # then the contact has the email and the traits
    contact = Contact.objects.get()
    assert contact.external_id == "u-1"
    assert contact.email == "ada@example.com"
    assert contact.first_name == "Ada"
    assert contact.attributes == {"plan": "pro"}
    # and the stored identify has its traits
    identify = Event.objects.get(name="identify")
    assert identify.properties == {
        "traits": {"email": "Ada@Example.com", "firstName": "Ada", "plan": "pro"}
    }


def test_a_browser_key_cannot_change_an_email_through_context_traits(
    rudderstack, server_source, browser_source
):
    # given a contact whose email a server set
    rudderstack(server_source.key).identify(
        user_id="u-1", traits={"email": "ada@example.com"}
    )
    # when a browser key identifies them with another email in context.traits
    rudderstack(browser_source.key).identify(
        user_id="u-1", traits={"email": "mallory@example.com", "plan": "pro"}
    )
    # then the email stays, the other traits land
    contact = Contact.objects.get()
    assert contact.email == "ada@example.com"
    assert contact.attributes == {"plan": "pro"}


def test_an_identify_with_a_bad_email_in_context_traits_is_refused(api, browser_source):
    message = {"anonymousId": "a", "context": {"traits": {"email": "not-an-email"}}}
    response = api.post("/identify", json=message, auth=(browser_source.key, ""))
    assert response.status_code == 400
    assert "not an email address" in response.json()["error"]
    assert Contact.objects.count() == 0


SHOP = "https://shop.example.com"


def test_a_retry_with_x_retry_count_passes_the_cors_preflight(api, browser_source):
    # given a shop's source; analytics.js (analytics-next) retries a failed call
    # with an X-Retry-Count header, which the browser must first be allowed to send
    browser_source.allowed_origins = [SHOP]
    browser_source.save()
    # when the browser asks
    response = api.options(
        "/t",
        headers={
            "Origin": SHOP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-retry-count",
        },
    )
    # then it may send them all
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SHOP
    allowed = response.headers["access-control-allow-headers"].lower().split(",")
    assert {"authorization", "content-type", "x-retry-count"} <= {
        h.strip() for h in allowed
    }


def _rate_window_full(source) -> None:
    """Fill the source's rate-limit windows for the coming minute in Redis, as a
    burst from other web processes would: every call now gets 429."""
    import time

    from apps.core.redis import redis_connection

    now = int(time.time())
    for second in range(now - 1, now + 60):
        redis_connection().set(f"nudge:rate:{source.pk}:{second}", 10**9, ex=120)


def test_a_429_lets_the_browser_read_retry_after(api, browser_source):
    # given a shop's source over its rate limit
    browser_source.allowed_origins = [SHOP]
    browser_source.rate_limit_per_second = 1
    browser_source.save()
    _rate_window_full(browser_source)
    # when the shop's page sends a call
    response = api.post(
        "/t",
        content=json.dumps(track()),
        auth=(browser_source.key, ""),
        headers={"Origin": SHOP, "Content-Type": "text/plain", "X-Retry-Count": "1"},
    )
    # then the 429's Retry-After is exposed to the page's script
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.headers["access-control-allow-origin"] == SHOP
    exposed = response.headers["access-control-expose-headers"].lower().split(",")
    assert "retry-after" in {h.strip() for h in exposed}
    assert Event.objects.count() == 0
