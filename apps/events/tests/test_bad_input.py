"""Input PostgreSQL or Python cannot take gets a 400 that names the field, over both
doors, and nothing of the call is stored (issue 13, items 13 and 14)."""

import uuid

import pytest

from apps.contacts.models import Contact
from apps.events.models import Event

pytestmark = pytest.mark.django_db(transaction=True)

NUL = "\x00"


def track(**extra):
    return {
        "event": "product_viewed",
        "anonymousId": "anon-1",
        "messageId": str(uuid.uuid4()),
        **extra,
    }


def nested(levels: int) -> dict:
    """An object ``levels`` deep: nested(1) is {}."""
    value: dict = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def assert_refused(response, field: str, message: str, *, stored: int = 0) -> None:
    """A 400 naming the field, and nothing of the call stored (``stored`` events
    are the test's own, accepted before)."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["detail"][0]["field"] == field
    assert message in body["detail"][0]["message"]
    assert field in body["error"]
    assert Event.objects.count() == stored
    assert Contact.objects.count() == min(stored, 1)


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/track", track(event=f"viewed{NUL}"), "event"),
        ("/track", track(properties={"sku": f"a{NUL}b"}), "properties.sku"),
        ("/track", track(properties={f"s{NUL}ku": 1}), "properties.s\\u0000ku"),
        ("/track", track(anonymousId=f"anon{NUL}"), "anonymousId"),
        ("/track", track(userId=f"user{NUL}"), "userId"),
        ("/track", track(messageId=f"m{NUL}"), "messageId"),
        (
            "/identify",
            {"userId": "u-1", "traits": {"tags": ["vip", f"x{NUL}"]}},
            "traits.tags[1]",
        ),
        (
            "/batch",
            {"batch": [track(), track(context={"page": {"title": NUL}})]},
            "batch[1].context.page.title",
        ),
    ],
)
def test_a_nul_character_anywhere_gets_400_naming_the_field(
    api, server_source, path, payload, field
):
    # when
    response = api.post(path, json=payload, auth=(server_source.key, ""))
    # then
    assert_refused(response, field, "NUL character")


def test_a_sent_at_far_from_the_timestamp_gets_400_not_an_overflow(api, server_source):
    # given a client clock that says it sent the event thousands of years after
    # it happened
    message = track(timestamp="0001-01-02T00:00:00Z", sentAt="9999-12-30T00:00:00Z")
    # when
    response = api.post("/track", json=message, auth=(server_source.key, ""))
    # then
    assert_refused(response, "timestamp", "must be from 1970-01-01")


@pytest.mark.parametrize(
    ("accepted", "refused"), [("+15:59", "+16:00"), ("-15:59", "-23:59")]
)
def test_a_utc_offset_postgresql_refuses_gets_400(
    api, server_source, accepted, refused
):
    # given the widest offset PostgreSQL takes is accepted
    message = track(timestamp=f"2026-03-01T12:00:00{accepted}")
    response = api.post("/track", json=message, auth=(server_source.key, ""))
    assert response.status_code == 200, response.text
    # when one beyond it comes
    message = track(timestamp=f"2026-03-01T12:00:00{refused}")
    response = api.post("/track", json=message, auth=(server_source.key, ""))
    # then
    assert_refused(response, "timestamp", "UTC offset", stored=1)


def test_a_time_before_the_supported_range_gets_400(api, server_source):
    # given a time whose UTC is in year 0, which Python cannot read back
    message = track(originalTimestamp="0001-01-01T00:00:00+05:00")
    response = api.post("/track", json=message, auth=(server_source.key, ""))
    assert_refused(response, "originalTimestamp", "must be from 1970-01-01")


def test_properties_nested_deeper_than_the_limit_get_400(api, server_source, settings):
    # given the documented limit: a body nests at most 32 levels (the body is one),
    # and a call that reaches it is accepted
    assert settings.NUDGE_MAX_JSON_DEPTH == 32
    message = track(properties=nested(31))
    response = api.post("/track", json=message, auth=(server_source.key, ""))
    assert response.status_code == 200, response.text
    assert Event.objects.get().properties == nested(31)
    for levels in [33, 300]:
        # when a call goes past it
        message = track(properties=nested(levels - 1))
        response = api.post("/track", json=message, auth=(server_source.key, ""))
        # then the field named is the first object past the limit
        assert_refused(
            response, "properties" + ".a" * 31, "nested more than 32", stored=1
        )


def test_a_batch_context_nested_too_deep_gets_400(api, server_source):
    body = {"batch": [track()], "context": nested(300)}
    response = api.post("/batch", json=body, auth=(server_source.key, ""))
    assert_refused(response, "context" + ".a" * 31, "nested more than 32")
