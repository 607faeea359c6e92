"""The Segment-compatible tracking API: identify, track, page, screen, group, alias,
batch, and the one-letter paths analytics.js uses."""

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Router
from pydantic import BaseModel

from . import schemas
from .auth import authenticate_write_key, check_event_size, read_json_body
from .clients import client_ip
from .ingestion import events_ingest
from .models import Source
from .privacy import count_dropped_without_consent, messages_with_consent
from .problems import ERROR_RESPONSES


class KeyAuth:
    """A ninja auth callable the OpenAPI schema describes (ninja describes only
    those with an ``openapi_security_schema``, by their class name): the write key
    as the HTTP Basic user name, or ``writeKey`` in the body."""

    description = ""

    def __init__(self, check: Callable[[HttpRequest], Source]) -> None:
        self.check = check
        self.openapi_security_schema = {
            "type": "http",
            "scheme": "basic",
            "description": self.description,
        }

    def __call__(self, request: HttpRequest) -> Source:
        return self.check(request)


class WriteKey(KeyAuth):
    description = (
        "A source's write key as the user name, with an empty password; browsers' "
        "beacons, which cannot set headers, send it as `writeKey` in the body."
    )


router = Router(tags=["tracking"], auth=WriteKey(authenticate_write_key))

RESPONSES = {200: schemas.Accepted, **ERROR_RESPONSES}


# Each call's path under /api/v1/ (Segment's names and analytics.js's short ones) and
# the model its body must fit. The ninja routes below serve these through Django; the
# WSGI door (apps/events/wsgi.py) serves the same paths without Django's request cycle.
CALLS: dict[str, type[BaseModel]] = {
    "track": schemas.Track,
    "t": schemas.Track,
    "identify": schemas.Identify,
    "i": schemas.Identify,
    "page": schemas.Page,
    "p": schemas.Page,
    "screen": schemas.Screen,
    "s": schemas.Screen,
    "group": schemas.Group,
    "g": schemas.Group,
    "alias": schemas.Alias,
    "a": schemas.Alias,
    "batch": schemas.Batch,
    "b": schemas.Batch,
}


def accept_call(
    source: Source,
    payload: schemas.Message | schemas.Batch,
    *,
    body: dict[str, Any],
    remote_addr: str | None,
    received_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """Store a validated call's events (durably, before this returns) and say how
    many were new: the 200's body. A call made again (the door's retry) passes the
    first one's ``received_at``, so that its messages get the same ids."""
    if isinstance(payload, schemas.Batch):
        for index, item in enumerate(body.get("batch") or []):
            check_event_size(item, where=f"batch[{index}]")
        messages, sent_at, context = payload.batch, payload.sentAt, payload.context
    else:
        check_event_size(body, where="the event")
        messages, sent_at, context = [payload], None, {}
    context = dict(context)
    if not source.is_server:
        # As Segment does: a browser's own address, unless the message says otherwise
        # (ingestion anonymises it, privacy.context_to_store).
        context.setdefault("ip", remote_addr)
    # Events without the consent a source asks for get the same answer as the rest
    # (Segment's clients would retry an error), but are only counted.
    consented = messages_with_consent(
        source=source,
        messages=messages,
        batch_context=context,
        batch=isinstance(payload, schemas.Batch),
    )
    result = events_ingest(
        source=source,
        messages=consented,
        received_at=received_at,
        batch_sent_at=sent_at,
        batch_context=context,
    )
    count_dropped_without_consent(
        source_id=source.pk, dropped=len(messages) - len(consented)
    )
    return {
        "success": True,
        "accepted": result.accepted,
        "duplicates": result.duplicates,
    }


def _accept(
    request: HttpRequest, payload: schemas.Message | schemas.Batch
) -> HttpResponse:
    body = accept_call(
        request.auth,
        payload,
        body=read_json_body(request),
        remote_addr=client_ip(request.META),
    )
    # The body ninja's JSON renderer would make, without first validating our own
    # three numbers against the response model (~5% of a track call's CPU).
    return HttpResponse(
        json.dumps(body), content_type="application/json; charset=utf-8"
    )


@router.post("/track", response=RESPONSES, summary="Record an action")
@router.post("/t", response=RESPONSES, include_in_schema=False)
def track(request: HttpRequest, payload: schemas.Track):
    return _accept(request, payload)


@router.post(
    "/identify", response=RESPONSES, summary="Say who the person is, with traits"
)
@router.post("/i", response=RESPONSES, include_in_schema=False)
def identify(request: HttpRequest, payload: schemas.Identify):
    return _accept(request, payload)


@router.post("/page", response=RESPONSES, summary="Record a page view")
@router.post("/p", response=RESPONSES, include_in_schema=False)
def page(request: HttpRequest, payload: schemas.Page):
    return _accept(request, payload)


@router.post("/screen", response=RESPONSES, summary="Record an app screen view")
@router.post("/s", response=RESPONSES, include_in_schema=False)
def screen(request: HttpRequest, payload: schemas.Screen):
    return _accept(request, payload)


@router.post("/group", response=RESPONSES, summary="Associate the person with a group")
@router.post("/g", response=RESPONSES, include_in_schema=False)
def group(request: HttpRequest, payload: schemas.Group):
    return _accept(request, payload)


@router.post("/alias", response=RESPONSES, summary="Link a previous id to a user id")
@router.post("/a", response=RESPONSES, include_in_schema=False)
def alias(request: HttpRequest, payload: schemas.Alias):
    return _accept(request, payload)


@router.post("/batch", response=RESPONSES, summary="Send many calls at once")
@router.post("/b", response=RESPONSES, include_in_schema=False)
def batch(request: HttpRequest, payload: schemas.Batch):
    return _accept(request, payload)
