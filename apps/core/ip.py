"""IP addresses as Nudge keeps them: anonymised unless configured otherwise."""

import ipaddress
from collections.abc import Mapping
from typing import Any

from django.conf import settings


def anonymise_ip(address: str | None) -> str:
    """``address`` with its host part zeroed: the last octet of an IPv4 address, the
    last 80 bits of an IPv6 one (as Google Analytics and Matomo do). Blank for
    anything that is not an address; unchanged if NUDGE_ANONYMISE_IP is off."""
    if not address:
        return ""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return ""
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if not settings.NUDGE_ANONYMISE_IP:
        return str(ip)
    if ip.version == 4:
        network = ipaddress.ip_network(f"{ip}/24", strict=False)
    else:
        network = ipaddress.ip_network(f"{ip}/48", strict=False)
    return str(network.network_address)


def client_ip(meta: Mapping[str, Any]) -> str | None:
    """The calling client's address, from a WSGI environ or a request's META:
    REMOTE_ADDR, or the entry of NUDGE_TRUSTED_PROXY_HEADER that the outermost
    trusted proxy wrote (apps/events/clients.py says why). As received: anonymise
    it before keeping it."""
    remote = meta.get("REMOTE_ADDR") or None
    header = settings.NUDGE_TRUSTED_PROXY_HEADER
    if not header:
        return remote
    raw = meta.get("HTTP_" + header.upper().replace("-", "_")) or ""
    hops = [hop.strip() for hop in raw.split(",") if hop.strip()]
    count = max(1, settings.NUDGE_TRUSTED_PROXY_COUNT)
    if len(hops) < count:
        # Not through every trusted proxy (or none set the header): the peer it is.
        return remote
    try:
        return str(ipaddress.ip_address(hops[-count]))
    except ValueError:
        return remote
