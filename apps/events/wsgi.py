"""The tracking calls (POST /api/v1/track, /t, ... /batch) served straight from WSGI.

config/wsgi.py puts this door in front of Django: the tracking calls come here, every
other request (admin, the rest of the API, a preflight, a GET) goes on to Django.
Behind this door are the functions the ninja routes use (parse_body, authenticate,
the pydantic models, accept_call, the error bodies), so the two doors answer alike,
and the API tests run through both. Under ASGI (config/asgi.py) the same calls go
through Django and ninja.

Why a door of its own: a track call is small, and Django's request cycle around it
(the WSGIRequest, nine middlewares, URL resolution, ninja's operation) cost about a
third of its CPU (bench/ingest.py). What that cycle gave these calls is done here:
the Host check against ALLOWED_HOSTS, the body size cap, CORS headers for a source's
origins (the rule of apps/events/cors.py), nosniff, a 500 logged on django.request,
and the database connection's end-of-request check.
"""

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    connection,
    connections,
)
from django.http import HttpRequest
from pydantic import BaseModel, ValidationError

from apps.core import clock

from .api import CALLS, accept_call
from .auth import (
    ApiError,
    BadRequest,
    authenticate,
    body_too_large,
    gzipped,
    origin_allowed,
    parse_body,
)
from .clients import client_ip
from .problems import api_error, invalid_payload

logger = logging.getLogger(__name__)
request_logger = logging.getLogger("django.request")

PREFIX = "/api/v1/"

Answer = tuple[int, dict[str, Any], list[tuple[str, str]]]


class TrackingDoor:
    """WSGI middleware: the tracking calls here, everything else to ``app``."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.paths: dict[str, type[BaseModel]] = {
            PREFIX + name: model for name, model in CALLS.items()
        }

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        model = self.paths.get(environ.get("PATH_INFO", ""))
        if model is None or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        # As Django's request_started and request_finished do: a connection past
        # its age or left broken is closed before the call and after it.
        release_connections()
        try:
            status, body, headers = answer(environ, model)
            headers = [*_cors_headers(environ.get("HTTP_ORIGIN")), *headers]
        finally:
            release_connections()
        content = orjson.dumps(body)
        start_response(
            f"{status} {HTTPStatus(status).phrase}",
            [
                ("Content-Type", "application/json; charset=utf-8"),
                ("Content-Length", str(len(content))),
                ("X-Content-Type-Options", "nosniff"),
                *headers,
            ],
        )
        return [content]


def answer(environ: dict[str, Any], model: type[BaseModel]) -> Answer:
    """One tracking call: status, JSON body and extra headers."""
    # One arrival time for the call, made again or not: the ids of messages that
    # came without one are worked out from it (ingestion.content_message_id).
    received_at = clock.now()
    try:
        _check_host(environ)
        body = parse_body(
            _read(environ), gzipped=gzipped(environ.get("HTTP_CONTENT_ENCODING"))
        )
        try:
            status, answered = _call(environ, model, body, received_at)
        except (OperationalError, InterfaceError):
            if not _connection_lost():
                raise
            # A connection kept from an earlier request died meanwhile (the
            # database restarted, an idle timeout). Django's CONN_HEALTH_CHECKS
            # would ask SELECT 1 before every request to find out; this door looks
            # only when a call fails, and makes the call again once on a new
            # connection. Going again is safe: it was rolled back, or it committed
            # and its messageIds now count as duplicates (and the scheduler's tick
            # hands their events to processing).
            logger.warning("database connection lost, making the call again")
            connection.close()
            status, answered = _call(environ, model, body, received_at)
        return status, answered, []
    except ApiError as exc:
        status, answered, extra = api_error(exc)
        return status, answered, list(extra.items())
    except Exception:
        request_logger.exception(
            "Internal Server Error: %s",
            environ.get("PATH_INFO"),
            extra={"status_code": 500},
        )
        return 500, {"error": "internal server error"}, []


def _call(
    environ: dict[str, Any],
    model: type[BaseModel],
    body: dict[str, Any],
    received_at: dt.datetime,
) -> tuple[int, dict[str, Any]]:
    """The part of a call that may touch the database (the key's source, then the
    events): what answer() makes again on a connection that died."""
    source = authenticate(
        body=body,
        authorization=environ.get("HTTP_AUTHORIZATION", ""),
        origin=environ.get("HTTP_ORIGIN"),
        client_ip=client_ip(environ),
    )
    try:
        payload = model.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors(
            include_url=False, include_context=False, include_input=False
        )
        return 400, invalid_payload(errors)
    return 200, accept_call(
        source,
        payload,
        body=body,
        remote_addr=client_ip(environ),
        received_at=received_at,
    )


def _connection_lost() -> bool:
    """Whether the database connection itself is gone (not a deadlock, a timeout or
    another error of a working connection, which are the call's own)."""
    raw = connection.connection
    return raw is not None and (raw.closed or raw.broken)


def _check_host(environ: dict[str, Any]) -> None:
    """Django's ALLOWED_HOSTS check, by Django's own code, once per distinct host
    (it builds a whole HttpRequest to ask: ~50 us a call)."""
    seen = (
        environ.get("HTTP_HOST"),
        environ.get("HTTP_X_FORWARDED_HOST"),
        environ.get("SERVER_NAME"),
        environ.get("SERVER_PORT"),
        environ.get("HTTP_X_FORWARDED_PORT"),
        # the answer changes with these too
        tuple(settings.ALLOWED_HOSTS),
        settings.DEBUG,
        settings.USE_X_FORWARDED_HOST,
        settings.USE_X_FORWARDED_PORT,
    )
    error = _hosts.get(seen, _UNSEEN)
    if error is _UNSEEN:
        request = HttpRequest()
        request.META = environ
        try:
            request.get_host()
            error = None
        except DisallowedHost as exc:
            error = str(exc)
        if len(_hosts) > 1_000:  # someone is making hosts up; don't grow forever
            _hosts.clear()
        _hosts[seen] = error
    if error is not None:
        logging.getLogger("django.security.DisallowedHost").error(error)
        raise BadRequest(error)


_UNSEEN = object()
_hosts: dict[tuple, str | None] = {}


def _read(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise BadRequest("Content-Length is not a number") from None
    # What Django reads at most before it refuses (RequestDataTooBig); parse_body
    # then applies the batch limit to the (gunzipped) body.
    cap = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if cap is not None and length > cap:
        raise body_too_large()
    return environ["wsgi.input"].read(length) if length > 0 else b""


def release_connections() -> None:
    """Django's close_old_connections (what request_started and request_finished
    run): close a connection that outlived CONN_MAX_AGE or broke. Less the health
    check it arms for the next use, a SELECT 1 round trip on every call: this door
    finds a dead connection when a call fails instead (answer())."""
    for conn in connections.all(initialized_only=True):
        conn.close_if_unusable_or_obsolete()
        conn.health_check_done = True


def _cors_headers(origin: str | None) -> list[tuple[str, str]]:
    """django-cors-headers' answer for /api/v1/ (see apps/events/cors.py): always
    Vary: origin; the origin echoed, and the headers exposed, when some enabled
    source allows it. Worked out
    after the call, whose answer stands if the origins cannot be read."""
    headers = [("Vary", "origin")]
    if not origin:
        return headers
    try:
        allowed = origin_allowed(origin)
    except DatabaseError:
        logger.warning("could not read the sources' origins for CORS", exc_info=True)
        return headers
    if allowed:
        headers.append(("Access-Control-Allow-Origin", origin))
        # What the page's script may read of the answer (a 429's Retry-After), as
        # django-cors-headers says it on Django's path.
        headers.append(
            ("Access-Control-Expose-Headers", ", ".join(settings.CORS_EXPOSE_HEADERS))
        )
    return headers
