"""Reading, authenticating and rate-limiting an ingestion request.

The write key arrives as the HTTP Basic user name (Segment's libraries) or as a
``writeKey`` field in the body (browser beacons cannot set headers). So the body is
read here, once, before authentication: gunzipped if need be, size-checked (413), and
parsed whatever the Content-Type says (beacons send text/plain). The parsed dict is
kept on the request for ninja's parser.
"""

import base64
import binascii
import threading
import time
import zlib
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from ninja.parser import Parser

from apps.core.json_input import JsonInputError, check_json_input
from apps.core.redis import redis_connection

from .clients import client_ip, client_within_limit
from .models import PUBLIC_KEY_PREFIX, SECRET_KEY_PREFIX, Source, hash_key


class ApiError(Exception):
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    status = 400


class InvalidField(BadRequest):
    """A 400 that names the wrong field, as a validation error's does."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"invalid payload: {field}: {message}")
        self.detail = [{"field": field, "message": message}]


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class PayloadTooLarge(ApiError):
    status = 413


class RateLimited(ApiError):
    status = 429


_BODY_ATTR = "_nudge_json"


def read_json_body(request: HttpRequest) -> dict[str, Any]:
    cached = getattr(request, _BODY_ATTR, None)
    if cached is not None:
        return cached
    try:
        raw = request.body
    except RequestDataTooBig:
        raise body_too_large() from None
    data = parse_body(raw, gzipped=gzipped(request.headers.get("Content-Encoding")))
    setattr(request, _BODY_ATTR, data)
    return data


def body_too_large() -> PayloadTooLarge:
    """The 413 for a body over what is read at all (Django's DATA_UPLOAD cap)."""
    return PayloadTooLarge(
        f"request body is over {settings.NUDGE_MAX_BATCH_BYTES} bytes"
    )


def gzipped(content_encoding: str | None) -> bool:
    """Whether a Content-Encoding header says gzip."""
    return (content_encoding or "").strip().lower() == "gzip"


def parse_body(raw: bytes, *, gzipped: bool) -> dict[str, Any]:
    """A call's body as a dict: gunzipped if need be, size-checked, JSON whatever
    the Content-Type said."""
    limit = settings.NUDGE_MAX_BATCH_BYTES
    if gzipped:
        try:
            # A cap on the output: a small gzip body must not inflate into gigabytes.
            raw = zlib.decompressobj(wbits=31).decompress(raw, limit + 1)
        except zlib.error:
            raise BadRequest("body is not valid gzip") from None
    if len(raw) > limit:
        raise PayloadTooLarge(f"request body is over {limit} bytes")
    if not raw.strip():
        raise BadRequest("request body is empty")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    try:
        # No NUL characters and no deep nesting, whatever the call (issue 13).
        check_json_input(data, raw=raw, max_depth=settings.NUDGE_MAX_JSON_DEPTH)
    except JsonInputError as exc:
        raise InvalidField(exc.field, exc.message) from None
    return data


class BodyParser(Parser):
    """ninja's parser, reusing the body the authenticator already read."""

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        return read_json_body(request)


def check_event_size(item: Any, *, where: str) -> None:
    """Segment's per-call limit, applied to each event of a batch too."""
    limit = settings.NUDGE_MAX_EVENT_BYTES
    if len(orjson.dumps(item)) > limit:
        raise PayloadTooLarge(f"{where} is over {limit} bytes")


# -- keys ----------------------------------------------------------------------------

# Sources are read on every request; a few seconds of caching per process saves a
# query each time. A disabled or rotated key stops working within this many seconds
# in other processes (at once in the one that changed it). The keys' cache holds
# write keys only, whatever they are: anything else cached (the origins) lives
# apart, so that no key a caller makes up can read or overwrite it.
SOURCE_CACHE_SECONDS = 5.0
_source_cache: dict[str, tuple[float, Source | None]] = {}
_source_cache_lock = threading.Lock()
# (until when, every allowed origin), or None
_origins_cache: tuple[float, frozenset[str]] | None = None


def forget_cached_sources() -> None:
    """Drop what this process keeps of sources: keys, origins and rate windows."""
    global _origins_cache
    with _source_cache_lock:
        _source_cache.clear()
        _origins_cache = None
    with _windows_lock:
        _windows.clear()


def source_for_key(key: str) -> Source | None:
    now = time.monotonic()
    hit = _source_cache.get(key)
    if hit and hit[0] > now:
        return hit[1]
    if "\x00" in key:  # no key holds one, and PostgreSQL refuses to compare it
        source = None
    elif key.startswith(SECRET_KEY_PREFIX):
        source = Source.objects.filter(secret_key_hash=hash_key(key)).first()
    elif key.startswith(PUBLIC_KEY_PREFIX):
        source = Source.objects.filter(public_key=key).first()
    else:
        source = None
    with _source_cache_lock:
        if len(_source_cache) > 10_000:  # someone is guessing keys; don't grow forever
            _source_cache.clear()
        _source_cache[key] = (now + SOURCE_CACHE_SECONDS, source)
    return source


def _write_key(authorization: str, body: dict[str, Any]) -> str | None:
    if authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(
                authorization[6:].strip(), validate=True
            ).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("Authorization header is not valid Basic auth") from None
        user, _, _password = decoded.partition(":")
        return user or None
    key = body.get("writeKey")
    return key if isinstance(key, str) and key else None


def origin_allowed(origin: str | None) -> bool:
    """Whether some enabled source allows this Origin (CORS: a preflight carries no
    key, so it is the union of the sources' origins)."""
    origin = (origin or "").rstrip("/")
    return bool(origin) and origin in allowed_origins()


def allowed_origins() -> frozenset[str]:
    """Every origin some enabled source allows (CORS preflights carry no key)."""
    global _origins_cache
    now = time.monotonic()
    hit = _origins_cache
    if hit and hit[0] > now:
        return hit[1]
    origins: set[str] = set()
    for listed in Source.objects.filter(enabled=True).values_list(
        "allowed_origins", flat=True
    ):
        origins.update(o.rstrip("/") for o in listed or [])
    with _source_cache_lock:
        _origins_cache = (now + SOURCE_CACHE_SECONDS, frozenset(origins))
    return _origins_cache[1]


def authenticate_write_key(request: HttpRequest) -> Source:
    """ninja auth callable: the Source behind the request's write key (a GET has
    no body: its key is the Basic auth user name)."""
    return authenticate(
        body={} if request.method in ("GET", "HEAD") else read_json_body(request),
        authorization=request.headers.get("Authorization", ""),
        origin=request.headers.get("Origin"),
        client_ip=client_ip(request.META),
    )


def authenticate(
    *,
    body: dict[str, Any],
    authorization: str,
    origin: str | None,
    client_ip: str | None = None,
) -> Source:
    """The enabled Source behind a call's write key, allowed from this Origin and
    within its rate limits (a browser key's: this client's first, then the key's);
    else 401, 403 or 429."""
    key = _write_key(authorization, body)
    if not key:
        raise Unauthorized(
            "missing write key: send it as the Basic auth user name or as writeKey"
        )
    source = source_for_key(key)
    if source is None:
        raise Unauthorized("unknown write key")
    if not source.enabled:
        raise Unauthorized("this write key's source is disabled")
    if (
        origin
        and source.allowed_origins
        and origin.rstrip("/") not in {o.rstrip("/") for o in source.allowed_origins}
    ):
        raise Forbidden(f"origin {origin} is not allowed for this write key")
    if not source.is_server:
        # First: a call refused here must not count against the whole site's key.
        over = client_within_limit(source_id=source.pk, ip=client_ip)
        if over:
            raise RateLimited(f"over {over} from this address for this key")
    _check_rate(source)
    return source


# Rate limits: a fixed one-second window per source, counted in Redis so that every
# web process shares it. A process does not ask Redis on every call: it counts locally
# and adds its count to Redis's every RATE_SHARE-th of the limit (and whenever its
# own count would cross the limit), so a burst can overshoot by at most that share per
# process; a limit under 2 x RATE_SHARE is counted exactly.
RATE_SHARE = 50


class _Window:
    __slots__ = ("second", "total", "unsent")

    def __init__(self, second: int) -> None:
        self.second = second
        self.total = 0  # Redis's count for the window when this process last asked
        self.unsent = 0  # calls counted here since


_windows: dict[int, _Window] = {}
_windows_lock = threading.Lock()


def _check_rate(source: Source) -> None:
    limit = source.effective_rate_limit
    with _windows_lock:
        # The clock is read under the lock, so windows only ever move forward.
        second = int(time.time())
        window = _windows.get(source.pk)
        if window is None or window.second < second:
            window = _windows[source.pk] = _Window(second)
        second = window.second
        window.unsent += 1
        if window.total + window.unsent <= limit and window.unsent < max(
            1, limit // RATE_SHARE
        ):
            return
        unsent, window.unsent = window.unsent, 0
    try:
        pipe = redis_connection().pipeline(transaction=False)
        key = f"nudge:rate:{source.pk}:{second}"
        pipe.incrby(key, unsent)
        pipe.expire(key, 2)
        total = pipe.execute()[0]
    except Exception:
        return  # Redis away: let calls through rather than refuse them all
    with _windows_lock:
        if window.second == second:
            window.total = max(window.total, total)
    if total > limit:
        raise RateLimited(f"over {limit} requests per second for this key")
