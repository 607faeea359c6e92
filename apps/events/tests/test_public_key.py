"""What a holder of a public (browser) write key can and cannot do, over HTTP
through both doors: keys that look like cache entries, and rate limits per client
address under the key's own."""

import pytest

from apps.events.models import Event

from .test_api import track

pytestmark = pytest.mark.django_db(transaction=True)

SHOP = "https://shop.example.com"
PREFLIGHT = {
    "Origin": SHOP,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}


@pytest.mark.parametrize("key", ["__origins__", "__ORIGINS__", "origins"])
def test_a_write_key_named_like_the_origins_cache_gets_401_not_500(
    api,
    browser_source,
    key,
):
    # given a shop's source, whose origins a preflight has just read (and cached)
    browser_source.allowed_origins = [SHOP]
    browser_source.save()
    assert api.options("/track", headers=PREFLIGHT).status_code == 200
    # when a call comes with a write key spelled like that cache entry
    response = api.post("/track", json=track(), auth=(key, ""))
    # then it is an unknown key, and the next preflight still works
    assert response.status_code == 401
    assert response.json() == {"error": "unknown write key"}
    again = api.options("/track", headers=PREFLIGHT)
    assert again.headers["access-control-allow-origin"] == SHOP
    assert Event.objects.count() == 0


def test_a_write_key_named_like_the_origins_cache_first_does_not_break_cors(
    api,
    browser_source,
):
    # given a call with that key, answered (and cached) before any preflight
    browser_source.allowed_origins = [SHOP]
    browser_source.save()
    assert api.post("/track", json=track(), auth=("__origins__", "")).status_code == 401
    # when a page on the shop asks for CORS
    response = api.options("/track", headers=PREFLIGHT)
    # then it is allowed as usual
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SHOP


# -- a rate limit per client address, under the key's --------------------------------


@pytest.fixture
def behind_a_proxy(settings):
    """A proxy that sets X-Forwarded-For in front of the app, and a small limit per
    client address (its windows start at a client's first call, so a test well
    under a minute never sees one end)."""
    settings.NUDGE_TRUSTED_PROXY_HEADER = "X-Forwarded-For"
    settings.NUDGE_TRUSTED_PROXY_COUNT = 1
    settings.NUDGE_RATE_LIMIT_PER_IP = "3/minute"


def _from(ip: str, *, spoofed: str = "") -> dict[str, str]:
    return {"X-Forwarded-For": f"{spoofed}, {ip}" if spoofed else ip}


def test_one_client_over_its_limit_gets_429_while_another_with_the_key_gets_200(
    api,
    browser_source,
    behind_a_proxy,
):
    # given a site's browser key, with room for ten calls a second
    browser_source.rate_limit_per_second = 10
    browser_source.save()
    key = (browser_source.key, "")
    # when one client sends calls as fast as it can
    hammering = [
        api.post("/track", json=track(), auth=key, headers=_from("203.0.113.7"))
        for _ in range(12)
    ]
    # then it gets 429 past its own limit, saying which
    assert [r.status_code for r in hammering] == [200] * 3 + [429] * 9
    assert "from this address" in hammering[-1].json()["error"]
    assert hammering[-1].headers["retry-after"] == "1"
    # and another client with the same key still gets through: the refused calls
    # did not count against the key
    others = [
        api.post("/track", json=track(), auth=key, headers=_from("198.51.100.4"))
        for _ in range(3)
    ]
    assert [r.status_code for r in others] == [200] * 3
    # and each event keeps its real client's address (anonymised), not the proxy's
    ips = sorted(Event.objects.values_list("context__ip", flat=True))
    assert ips == ["198.51.100.0"] * 3 + ["203.0.113.0"] * 3


def test_a_client_cannot_escape_its_limit_by_writing_x_forwarded_for(
    api,
    browser_source,
    behind_a_proxy,
):
    # given a client that writes its own X-Forwarded-For, a new address each call,
    # in front of the trusted proxy's
    statuses = [
        api.post(
            "/track",
            json=track(),
            auth=(browser_source.key, ""),
            headers=_from("203.0.113.7", spoofed=f"10.9.9.{n}"),
        ).status_code
        for n in range(5)
    ]
    # then it is counted (and recorded) by the address the proxy saw
    assert statuses == [200] * 3 + [429] * 2
    assert set(Event.objects.values_list("context__ip", flat=True)) == {"203.0.113.0"}


def test_without_a_trusted_proxy_header_the_peer_address_counts(
    api,
    browser_source,
    settings,
):
    # given no trusted proxy (the default): X-Forwarded-For is the client's word
    settings.NUDGE_RATE_LIMIT_PER_IP = "3/minute"
    statuses = [
        api.post(
            "/track",
            json=track(),
            auth=(browser_source.key, ""),
            headers=_from(f"203.0.113.{n}"),
        ).status_code
        for n in range(5)
    ]
    assert statuses == [200] * 3 + [429] * 2
    assert set(Event.objects.values_list("context__ip", flat=True)) == {"127.0.0.0"}


def test_server_keys_are_not_limited_per_address(
    api,
    server_source,
    behind_a_proxy,
):
    statuses = {
        api.post(
            "/track",
            json=track(),
            auth=(server_source.key, ""),
            headers=_from("203.0.113.7"),
        ).status_code
        for _ in range(5)
    }
    assert statuses == {200}


def test_a_write_key_with_a_nul_character_is_unknown_not_a_500(api):
    # (PostgreSQL cannot compare text holding a NUL: the key is never looked up)
    response = api.post("/track", json=track(), auth=("pk_\x00x", ""))
    assert response.status_code == 401
    assert response.json() == {"error": "unknown write key"}
