"""The client's address behind trusted proxies, and what its calls count under."""

import pytest

from apps.events.clients import check_client_limits, client_bucket, client_ip


@pytest.mark.parametrize(
    ("header", "count", "meta", "expected"),
    [
        # the default: no header trusted
        ("", 1, {"HTTP_X_FORWARDED_FOR": "203.0.113.7"}, "10.0.0.1"),
        # one proxy: the last entry; what the client wrote before it is ignored
        (
            "X-Forwarded-For",
            1,
            {"HTTP_X_FORWARDED_FOR": "1.2.3.4, 203.0.113.7"},
            "203.0.113.7",
        ),
        # two proxies: the entry the outer one wrote
        (
            "X-Forwarded-For",
            2,
            {"HTTP_X_FORWARDED_FOR": "1.2.3.4, 203.0.113.7, 10.0.0.2"},
            "203.0.113.7",
        ),
        # fewer entries than proxies (a call that went round them): the peer
        ("X-Forwarded-For", 2, {"HTTP_X_FORWARDED_FOR": "203.0.113.7"}, "10.0.0.1"),
        # not an address: the peer
        ("X-Forwarded-For", 1, {"HTTP_X_FORWARDED_FOR": "bogus"}, "10.0.0.1"),
        ("X-Real-IP", 1, {"HTTP_X_REAL_IP": "2001:db8::1"}, "2001:db8::1"),
        ("X-Forwarded-For", 1, {}, "10.0.0.1"),
    ],
)
def test_the_client_address(settings, header, count, meta, expected):
    settings.NUDGE_TRUSTED_PROXY_HEADER = header
    settings.NUDGE_TRUSTED_PROXY_COUNT = count
    assert client_ip({"REMOTE_ADDR": "10.0.0.1", **meta}) == expected


def test_an_ipv6_client_is_counted_by_its_64_block():
    assert client_bucket("2001:db8:1:2:aaaa::1") == client_bucket("2001:db8:1:2::9")
    assert client_bucket("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_bucket("2001:db8:1:3::1") != client_bucket("2001:db8:1:2::1")
    assert client_bucket("::ffff:203.0.113.7") == "203.0.113.7"
    assert client_bucket("203.0.113.7") == "203.0.113.7"


def test_a_limit_that_does_not_parse_stops_the_start(settings):
    settings.NUDGE_RATE_LIMIT_PER_IP = "thirty a second"
    errors = [e for e in check_client_limits() if e.id == "nudge.E601"]
    assert len(errors) == 1
    assert "NUDGE_RATE_LIMIT_PER_IP='thirty a second'" in errors[0].msg
    settings.NUDGE_RATE_LIMIT_PER_IP = "30/second;600/minute"
    assert not [e for e in check_client_limits() if e.id == "nudge.E601"]


def test_behind_a_proxy_without_a_client_header_the_start_warns(settings):
    # given an https site (so a TLS proxy in front, most likely) and no header to
    # read the client's address from: every visitor would share the proxy's window
    settings.SITE_URL = "https://nudge.example.com"
    settings.NUDGE_TRUSTED_PROXY_HEADER = ""
    warnings = [w for w in check_client_limits() if w.id == "nudge.W601"]
    assert len(warnings) == 1
    assert "NUDGE_TRUSTED_PROXY_HEADER" in warnings[0].hint
    # with the header, or with no per-address limit, nothing to say
    settings.NUDGE_TRUSTED_PROXY_HEADER = "X-Forwarded-For"
    assert not [w for w in check_client_limits() if w.id == "nudge.W601"]
    settings.NUDGE_TRUSTED_PROXY_HEADER = ""
    settings.NUDGE_RATE_LIMIT_PER_IP = ""
    assert not [w for w in check_client_limits() if w.id == "nudge.W601"]
