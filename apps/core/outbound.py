"""Outbound HTTP to an address a person typed (a webhook step's URL), without letting
it reach into the network Nudge runs in (server-side request forgery).

The host is resolved once, where the connection is made; every address it resolves
to must be public unless the allow-list names the host or holds the address; and the
socket is opened to one of those checked addresses. Resolving again to connect would
let a DNS answer that changes in between (rebinding) send the request somewhere that
was never checked. TLS (SNI and certificate verification) and the Host header still
use the name in the URL, so HTTPS is verified as usual.

Redirects are not followed: a signed payload with contact data goes where it was
configured or nowhere. The answer is read up to a limit, and the whole exchange
(connect, send, read) has one deadline, so a receiver answering a byte at a time
cannot hold a worker. Proxies from the environment are not used: a proxy resolves the
name itself, after the check.

The library route was considered: ``advocate`` (requests) has had no release since
2020, and the httpx wrappers on PyPI are new one-person projects. httpcore (httpx's
own engine) takes a network backend, which is exactly the place to resolve, check
and connect in one step, so this module is that backend and little else.
"""

import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

CONNECT_TIMEOUT_SECONDS = 5
# What stays as typed in a path or query; the rest (non-ASCII, spaces) is
# percent-encoded.
URL_SAFE = "/%:@!$&'()*+,;=-._~?"

# NAT64 (RFC 6052) carries an IPv4 address in its last 32 bits, and a DNS64 resolver
# answers with such addresses on IPv6-only networks: judge the IPv4 address inside.
NAT64 = ipaddress.ip_network("64:ff9b::/96")

# Checked in this order: 169.254.169.254 is named link-local, not private (Python
# counts both), and 240.0.0.1 reserved.
_KINDS = [
    ("is_unspecified", "the unspecified address"),
    ("is_loopback", "a loopback address"),
    ("is_link_local", "a link-local address (where cloud metadata services answer)"),
    ("is_multicast", "a multicast address"),
    ("is_reserved", "a reserved address"),
    ("is_private", "a private address"),
    ("is_site_local", "a site-local address"),
]

_TRANSPORT_ERRORS = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
)


class Refused(Exception):
    """The destination is not one Nudge may send to: trying again will not help."""


class OutboundError(Exception):
    """The exchange failed (network, TLS, timeout, protocol); it may work later."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    truncated: bool  # the receiver sent more than the limit; the rest was not read


@dataclass(frozen=True)
class AllowList:
    """Internal receivers that may be reached all the same: host names (a leading dot
    for every subdomain), addresses and CIDR ranges."""

    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> "AllowList":
        names, suffixes, networks = set(), [], []
        for entry in entries:
            entry = _normal(entry)
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                if entry.startswith("."):
                    suffixes.append(entry)
                else:
                    names.add(entry)
        return cls(frozenset(names), tuple(suffixes), tuple(networks))

    def names_host(self, host: str) -> bool:
        host = _normal(host)
        return host in self.names or (
            bool(self.suffixes) and host.endswith(self.suffixes)
        )

    def holds(self, address: IPAddress) -> bool:
        candidates = [address, *_embedded_ipv4(address)]
        return any(each in network for each in candidates for network in self.networks)


def address_refusal(address: IPAddress) -> str | None:
    """Why ``address`` is no public destination ("a loopback address"), or None."""
    inner = _embedded_ipv4(address)
    if inner:
        # The IPv4 address inside is where the packets end up.
        for each in inner:
            refusal = address_refusal(each)
            if refusal:
                return f"an IPv6 form of {each}, {refusal}"
        return None
    for attribute, kind in _KINDS:
        if getattr(address, attribute, False):
            return kind
    if not address.is_global:
        return "not a public address"
    return None


def url_refusal(url: str, *, allowed: AllowList) -> str | None:
    """What makes ``url`` no destination, judged from the URL alone (no DNS): the
    check a workflow gets when it is saved. Names are resolved when sending."""
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
    except ValueError:  # an unclosed IPv6 bracket, say
        parts = None
    if not parts or parts.scheme not in {"http", "https"} or not parts.hostname:
        return "an http(s) URL"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        return "the port must be a number from 1 to 65535"
    if parts.username is not None or parts.password is not None:
        # It would be shown wherever the URL is (the diagram, runs, deliveries).
        return "a URL without user:password@ (receivers verify the signature)"
    host = parts.hostname
    try:
        _idna(host)
    except UnicodeError:
        return f"{host!r} is not a valid host name"
    if allowed.names_host(host):
        return None
    if _normal(host) == "localhost" or _normal(host).endswith(".localhost"):
        return f"{host} is a loopback address"
    address = _literal_address(host)
    if address is None or allowed.holds(address):
        return None
    refusal = address_refusal(address)
    return refusal and f"{host} is {refusal}"


def destination_refusal(
    host: str, addresses: list[IPAddress], *, allowed: AllowList
) -> str | None:
    """Why ``host``, resolved to ``addresses``, may not be reached: every address must
    be public or allow-listed, since the connection could go to any of them."""
    if allowed.names_host(host):
        return None
    for address in addresses:
        if allowed.holds(address):
            continue
        refusal = address_refusal(address)
        if refusal:
            return f"{host} resolves to {address}, {refusal}"
    return None


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to: the network edge, which tests answer for."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def post(
    url: str,
    *,
    body: bytes,
    headers: dict[str, str],
    allowed: AllowList,
    timeout: float,
    max_bytes: int,
    resolve: Resolver | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Response:
    """POST ``body`` to ``url`` if it is a destination Nudge may reach (else
    :class:`Refused`); read at most ``max_bytes`` of the answer, all within
    ``timeout`` seconds (else :class:`OutboundError`)."""
    refusal = url_refusal(url, allowed=allowed)
    if refusal:
        raise Refused(refusal)
    parts = urlsplit(url)
    backend = _CheckedBackend(
        allowed=allowed,
        resolve=resolve or resolve_host,
        deadline=time.monotonic() + timeout,
    )
    host = _idna(parts.hostname)
    # A path or query typed with non-ASCII characters goes percent-encoded.
    path = quote(parts.path or "/", safe=URL_SAFE)
    query = quote(parts.query, safe=URL_SAFE)
    target = httpcore.URL(
        scheme=parts.scheme.encode(),
        host=host,
        port=parts.port,
        target=path + (f"?{query}" if query else ""),
    )
    sent_headers = {
        "Host": _host_header(host.decode("ascii"), parts.port),
        "Content-Length": str(len(body)),
        **headers,
    }
    timeouts = {
        "connect": min(CONNECT_TIMEOUT_SECONDS, timeout),
        "read": timeout,
        "write": timeout,
        "pool": timeout,
    }
    try:
        with (
            httpcore.ConnectionPool(
                ssl_context=ssl_context or httpx.create_ssl_context(),
                network_backend=backend,
                max_connections=1,
            ) as pool,
            pool.stream(
                "POST",
                target,
                headers=list(sent_headers.items()),
                content=body,
                extensions={"timeout": timeouts},
            ) as response,
        ):
            answer, truncated = _read(response, max_bytes)
            return Response(response.status, answer, truncated)
    except _TRANSPORT_ERRORS as exc:
        raise OutboundError(f"{type(exc).__name__}: {exc}") from exc
    except Refused:
        raise
    except Exception as exc:  # anything else about this call: a failed attempt
        raise OutboundError(f"{type(exc).__name__}: {exc}") from exc


def _read(response: httpcore.Response, max_bytes: int) -> tuple[bytes, bool]:
    chunks, size = [], 0
    for chunk in response.iter_stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            # Leaving the stream unread closes the connection: the rest never comes.
            return b"".join(chunks)[:max_bytes], True
    return b"".join(chunks), False


class _CheckedBackend(httpcore.NetworkBackend):
    """Resolves, checks and connects in one step, to an address it checked."""

    def __init__(self, *, allowed: AllowList, resolve: Resolver, deadline: float):
        self._allowed = allowed
        self._resolve = resolve
        self._deadline = deadline
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = [
                ipaddress.ip_address(each) for each in self._resolve(host, port)
            ]
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"{host} does not resolve: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} does not resolve")
        refusal = destination_refusal(host, addresses, allowed=self._allowed)
        if refusal:
            raise Refused(refusal)
        error: Exception | None = None
        for address in addresses:
            try:
                stream = self._sockets.connect_tcp(
                    str(address),
                    port,
                    timeout=_within(self._deadline, timeout, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
                continue
            return _DeadlineStream(stream, self._deadline)
        raise error

    def sleep(self, seconds: float) -> None:
        self._sockets.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    """A socket whose every read and write ends by the exchange's deadline."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float):
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        timeout = _within(self._deadline, timeout, httpcore.ReadTimeout)
        return self._stream.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        timeout = _within(self._deadline, timeout, httpcore.WriteTimeout)
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _within(self._deadline, timeout, httpcore.ConnectTimeout)
        secured = self._stream.start_tls(ssl_context, server_hostname, timeout)
        return _DeadlineStream(secured, self._deadline)

    def get_extra_info(self, info: str):
        return self._stream.get_extra_info(info)


def _within(deadline: float, timeout: float | None, error: type[Exception]) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise error("timed out: the whole exchange has a deadline")
    return remaining if timeout is None else min(timeout, remaining)


def _literal_address(host: str) -> IPAddress | None:
    """The address ``host`` spells, in any form the resolver would accept as one
    (``127.1``, ``2130706433``, ``0x7f.0.0.1``), or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.ip_address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def _embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    if address.version == 4:
        return []
    if address.ipv4_mapped:
        return [address.ipv4_mapped]
    if address.sixtofour:
        return [address.sixtofour]
    if address.teredo:
        return list(address.teredo)
    if address in NAT64:
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    return []


def _host_header(host: str, port: int | None) -> str:
    name = f"[{host}]" if ":" in host else host  # an IPv6 literal
    return name + (f":{port}" if port else "")


def _idna(host: str) -> bytes:
    try:
        return host.encode("ascii")
    except UnicodeError:
        return host.encode("idna")


def _normal(host: str) -> str:
    return host.strip().lower().rstrip(".")
