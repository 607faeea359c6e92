"""Outbound requests: which addresses count as public, and HTTPS to a checked address
verified by the name in the URL. Real local servers; DNS answered by a fixed resolver
(the network edge)."""

import http.server
import ipaddress
import ssl
import threading

import pytest
import trustme

from apps.core import outbound

HOST = "hooks.example.test"


@pytest.mark.parametrize(
    ("address", "refusal"),
    [
        ("8.8.8.8", None),
        ("2606:4700::1111", None),
        ("64:ff9b::808:808", None),  # NAT64 form of a public address
        ("127.0.0.1", "a loopback address"),
        ("10.0.0.1", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("169.254.169.254", "a link-local address"),
        ("100.64.0.1", "not a public address"),
        ("240.0.0.1", "a reserved address"),
        ("255.255.255.255", "a reserved address"),
        ("239.1.2.3", "a multicast address"),
        ("::", "the unspecified address"),
        ("::1", "a loopback address"),
        ("fe80::1", "a link-local address"),
        ("fd00::1", "a private address"),
        ("ff02::1", "a multicast address"),
        ("::ffff:127.0.0.1", "an IPv6 form of 127.0.0.1, a loopback address"),
        ("64:ff9b::a9fe:a9fe", "an IPv6 form of 169.254.169.254, a link-local"),
        ("2002:7f00:1::", "an IPv6 form of 127.0.0.1, a loopback address"),
    ],
)
def test_only_public_addresses_are_destinations(address, refusal):
    found = outbound.address_refusal(ipaddress.ip_address(address))
    if refusal is None:
        assert found is None
    else:
        assert found is not None and found.startswith(refusal)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.hosts.append(self.headers["Host"])
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def tls_receiver():
    """An HTTPS receiver on 127.0.0.1 whose certificate names HOST only."""
    ca = trustme.CA()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.hosts = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    yield server, client_context
    server.shutdown()
    server.server_close()


def _post(url: str, client_context: ssl.SSLContext, lookups: list[str]):
    def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    return outbound.post(
        url,
        body=b"{}",
        headers={},
        allowed=outbound.AllowList.parse(["127.0.0.1"]),
        timeout=5,
        max_bytes=1024,
        resolve=resolve,
        ssl_context=client_context,
    )


def test_https_goes_to_the_checked_address_and_verifies_the_name(tls_receiver):
    # given an HTTPS receiver at 127.0.0.1 with a certificate for HOST
    server, client_context = tls_receiver
    lookups: list[str] = []
    # when posting to HOST, which resolves to 127.0.0.1
    response = _post(
        f"https://{HOST}:{server.server_port}/hook", client_context, lookups
    )
    # then the certificate was verified against HOST (SNI too), and Host named it
    assert response.status == 204
    assert lookups == [HOST]
    assert server.hosts == [f"{HOST}:{server.server_port}"]


def test_https_to_the_address_itself_fails_verification(tls_receiver):
    # given the same receiver, whose certificate does not name 127.0.0.1
    server, client_context = tls_receiver
    # when posting to the address, then verification fails (nothing is sent)
    with pytest.raises(outbound.OutboundError, match="CERTIFICATE_VERIFY_FAILED"):
        _post(f"https://127.0.0.1:{server.server_port}/hook", client_context, [])
    assert server.hosts == []
