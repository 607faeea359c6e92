"""Who is calling: the client's address (behind the proxies the operator trusts) and
its own rate limit under its key's (issue 13, item 6).

A browser key is public: anyone can copy it from a page. Counted per key only, one
client sending calls as fast as it can would use up the key's whole limit and put
every visitor of the site into 429. So a browser key's calls are also counted per
client address, before the key's count, and a call refused for its address does
not count against the key. Server keys are not: a site's servers call from a few
addresses, and their key is secret.

The address is REMOTE_ADDR unless NUDGE_TRUSTED_PROXY_HEADER names a header that
trusted proxies set (X-Forwarded-For): then it is the entry NUDGE_TRUSTED_PROXY_COUNT
places from the right, the address the outermost trusted proxy saw; entries further
left are whatever the client wrote. An IPv6 client is counted by its /64, the
block one subscriber gets. The per-address windows are the ``limits`` library's
fixed windows, in Redis, so every web process shares them.
"""

import functools
import ipaddress
import logging

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from limits import RateLimitItem, parse_many
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter
from redis import Redis

from apps.core.ip import client_ip
from apps.core.redis import redis_connection

logger = logging.getLogger(__name__)

__all__ = ["client_bucket", "client_ip", "client_within_limit"]

IPV6_CLIENT_PREFIX = 64


def client_bucket(ip: str) -> str:
    """What one client's calls are counted under: the address, or an IPv6 /64."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(
            ipaddress.ip_network(f"{address}/{IPV6_CLIENT_PREFIX}", strict=False)
        )
    return str(address)


@functools.lru_cache(maxsize=8)
def client_limits(spec: str) -> tuple[RateLimitItem, ...]:
    """NUDGE_RATE_LIMIT_PER_IP parsed ("30/second;600/minute"); empty: none."""
    if not spec.strip():
        return ()
    try:
        return tuple(parse_many(spec))
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"NUDGE_RATE_LIMIT_PER_IP={spec!r} is not a rate limit such as "
            f"'30/second' or '30/second;600/minute' ({exc})"
        ) from None


def check_client_limits(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """System check: a NUDGE_RATE_LIMIT_PER_IP that does not parse stops the start,
    rather than failing every browser call."""
    try:
        client_limits(settings.NUDGE_RATE_LIMIT_PER_IP)
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="nudge.E601")]
    behind_a_proxy = settings.SECURE_PROXY_SSL_HEADER or settings.SITE_URL.startswith(
        "https://"
    )
    if (
        settings.NUDGE_RATE_LIMIT_PER_IP
        and behind_a_proxy
        and not settings.NUDGE_TRUSTED_PROXY_HEADER
    ):
        # Every visitor would come from the proxy's address and share its window:
        # the whole site held to one client's rate.
        return [
            checks.Warning(
                "browser calls are limited per client address, and none is read "
                "from a proxy header",
                hint="Behind a proxy or load balancer set NUDGE_TRUSTED_PROXY_HEADER "
                "(e.g. X-Forwarded-For), or every visitor shares the proxy's "
                "address and NUDGE_RATE_LIMIT_PER_IP; served directly, ignore this.",
                id="nudge.W601",
            )
        ]
    return []


_limiter: tuple[Redis, FixedWindowRateLimiter] | None = None


def _fixed_windows() -> FixedWindowRateLimiter:
    """The limiter over this process's Redis connection pool (RQ's)."""
    global _limiter
    connection = redis_connection()
    if _limiter is None or _limiter[0] is not connection:
        storage = RedisStorage(
            "redis://",
            connection_pool=connection.connection_pool,
            key_prefix="nudge:rate-ip",
        )
        _limiter = (connection, FixedWindowRateLimiter(storage))
    return _limiter[1]


def client_within_limit(*, source_id: int, ip: str | None) -> str:
    """ "" if this client may make one more call with this key now; else the limit
    it is over ("30 per 1 second"). Counts the call."""
    items = client_limits(settings.NUDGE_RATE_LIMIT_PER_IP)
    if not items or not ip:
        return ""
    bucket = client_bucket(ip)
    try:
        limiter = _fixed_windows()
        for item in items:
            if not limiter.hit(item, str(source_id), bucket):
                return str(item)
    except Exception:
        # Redis away: let calls through rather than refuse them all (as the key's
        # limit does).
        logger.warning("could not count a client's calls", exc_info=True)
    return ""
