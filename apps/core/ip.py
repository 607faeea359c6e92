"""IP addresses as Nudge keeps them: anonymised unless configured otherwise."""

import ipaddress

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
