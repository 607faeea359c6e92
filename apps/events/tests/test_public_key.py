"""What a holder of a public (browser) write key can and cannot do, over HTTP
through both doors: keys that look like cache entries, and rate limits per client
address under the key's own."""

import pytest

from apps.events.models import Event

from .test_api import api, track  # noqa: F401 - the fixture over both doors

pytestmark = pytest.mark.django_db(transaction=True)

SHOP = "https://shop.example.com"
PREFLIGHT = {
    "Origin": SHOP,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}


@pytest.mark.parametrize("key", ["__origins__", "__ORIGINS__", "origins"])
def test_a_write_key_named_like_the_origins_cache_gets_401_not_500(
    api,  # noqa: F811
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
    api,  # noqa: F811
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
