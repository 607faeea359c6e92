"""What an event keeps of its sender's address and browser, over real HTTP through
both doors: IP addresses anonymised (NUDGE_ANONYMISE_IP, on by default), user
agents dropped if NUDGE_DROP_USER_AGENT is on."""

import pytest

from apps.events.models import Event

from .test_api import track

pytestmark = pytest.mark.django_db(transaction=True)

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
AGENT_DATA = {"brands": [{"brand": "Chromium", "version": "131"}], "mobile": False}


@pytest.fixture
def behind_a_proxy(settings):
    settings.NUDGE_TRUSTED_PROXY_HEADER = "X-Forwarded-For"
    settings.NUDGE_TRUSTED_PROXY_COUNT = 1


def stored_ip() -> str | None:
    return Event.objects.get().context.get("ip")


def test_a_browser_calls_address_is_stored_with_its_last_octet_zeroed(
    api, browser_source, behind_a_proxy
):
    # when a visitor's browser calls through the proxy
    response = api.post(
        "/track",
        json=track(),
        auth=(browser_source.key, ""),
        headers={"X-Forwarded-For": "203.0.113.77"},
    )
    # then the event keeps the address's network, not the visitor's host
    assert response.status_code == 200
    assert stored_ip() == "203.0.113.0"


def test_an_ipv6_address_in_the_context_keeps_only_its_first_48_bits(
    api, browser_source
):
    response = api.post(
        "/track",
        json=track(context={"ip": "2001:db8:85a3:1234:5678:8a2e:370:7334"}),
        auth=(browser_source.key, ""),
    )
    assert response.status_code == 200
    assert stored_ip() == "2001:db8:85a3::"


def test_an_address_a_server_forwards_is_anonymised_too(api, server_source):
    # (a server key's call has no address of its own: the server's is not the
    # visitor's; one it forwards in context.ip is a person's)
    api.post(
        "/track",
        json=track(context={"ip": "198.51.100.23"}),
        auth=(server_source.key, ""),
    )
    assert stored_ip() == "198.51.100.0"


def test_a_server_calls_own_address_is_not_stored(api, server_source):
    api.post("/track", json=track(), auth=(server_source.key, ""))
    assert stored_ip() is None


def test_each_event_of_a_batch_has_its_address_anonymised(api, browser_source):
    batch = [track(), track(context={"ip": "192.0.2.200"})]
    response = api.post(
        "/batch",
        json={"batch": batch, "context": {"ip": "198.51.100.9"}},
        auth=(browser_source.key, ""),
    )
    assert response.json()["accepted"] == 2
    assert sorted(Event.objects.values_list("context__ip", flat=True)) == [
        "192.0.2.0",
        "198.51.100.0",
    ]


@pytest.mark.parametrize("ip", ["not an address", 12345, None])
def test_an_ip_that_is_not_an_address_is_not_stored(api, browser_source, ip):
    response = api.post(
        "/track", json=track(context={"ip": ip}), auth=(browser_source.key, "")
    )
    assert response.status_code == 200
    assert "ip" not in Event.objects.get().context


def test_with_anonymisation_off_the_whole_address_is_kept(
    api, browser_source, behind_a_proxy, settings
):
    settings.NUDGE_ANONYMISE_IP = False
    api.post(
        "/track",
        json=track(),
        auth=(browser_source.key, ""),
        headers={"X-Forwarded-For": "203.0.113.77"},
    )
    assert stored_ip() == "203.0.113.77"


def test_the_user_agent_is_kept_by_default(api, browser_source):
    context = {"userAgent": CHROME, "userAgentData": AGENT_DATA, "locale": "en-GB"}
    api.post("/track", json=track(context=context), auth=(browser_source.key, ""))
    stored = Event.objects.get().context
    assert (stored["userAgent"], stored["userAgentData"]) == (CHROME, AGENT_DATA)


def test_with_drop_user_agent_on_events_are_stored_without_it(
    api, browser_source, settings
):
    # given an operator who keeps no user agents
    settings.NUDGE_DROP_USER_AGENT = True
    # when a browser sends them, in a batch's context and an event's own
    batch = [
        track("own", context={"userAgent": CHROME, "userAgentData": AGENT_DATA}),
        track("batchs", context={"locale": "en-GB"}),
    ]
    response = api.post(
        "/batch",
        json={"batch": batch, "context": {"userAgent": CHROME}},
        auth=(browser_source.key, ""),
    )
    # then neither event keeps them; the rest of the context stays
    assert response.json()["accepted"] == 2
    contexts = {e.name: e.context for e in Event.objects.all()}
    assert contexts["own"] == {"ip": "127.0.0.0"}
    assert contexts["batchs"] == {"ip": "127.0.0.0", "locale": "en-GB"}
