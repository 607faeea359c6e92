"""The Segment-compatible tracking API: identify, track, page, screen, group, alias,
batch, and the one-letter paths analytics.js uses."""

import json

from django.http import HttpRequest, HttpResponse
from ninja import Router

from . import schemas
from .auth import authenticate_write_key, check_event_size, read_json_body
from .ingestion import events_ingest

router = Router(tags=["tracking"], auth=authenticate_write_key)

ERRORS = {
    400: schemas.Problem,
    401: schemas.Problem,
    403: schemas.Problem,
    413: schemas.Problem,
    429: schemas.Problem,
}
RESPONSES = {200: schemas.Accepted, **ERRORS}


def _accept(
    request: HttpRequest,
    messages: list[schemas.Message],
    *,
    batch_sent_at=None,
    batch_context: dict | None = None,
) -> HttpResponse:
    source = request.auth
    context = dict(batch_context or {})
    if not source.is_server:
        # As Segment does: a browser's own address, unless the message says otherwise.
        context.setdefault("ip", request.META.get("REMOTE_ADDR"))
    result = events_ingest(
        source=source,
        messages=messages,
        batch_sent_at=batch_sent_at,
        batch_context=context,
    )
    # The body ninja's JSON renderer would make, without first validating our own
    # three numbers against the response model (~5% of a track call's CPU).
    body = {
        "success": True,
        "accepted": result.accepted,
        "duplicates": result.duplicates,
    }
    return HttpResponse(
        json.dumps(body), content_type="application/json; charset=utf-8"
    )


def _single(request: HttpRequest, message: schemas.Message) -> HttpResponse:
    check_event_size(read_json_body(request), where="the event")
    return _accept(request, [message])


@router.post("/track", response=RESPONSES, summary="Record an action")
@router.post("/t", response=RESPONSES, include_in_schema=False)
def track(request: HttpRequest, payload: schemas.Track):
    return _single(request, payload)


@router.post(
    "/identify", response=RESPONSES, summary="Say who the person is, with traits"
)
@router.post("/i", response=RESPONSES, include_in_schema=False)
def identify(request: HttpRequest, payload: schemas.Identify):
    return _single(request, payload)


@router.post("/page", response=RESPONSES, summary="Record a page view")
@router.post("/p", response=RESPONSES, include_in_schema=False)
def page(request: HttpRequest, payload: schemas.Page):
    return _single(request, payload)


@router.post("/screen", response=RESPONSES, summary="Record an app screen view")
@router.post("/s", response=RESPONSES, include_in_schema=False)
def screen(request: HttpRequest, payload: schemas.Screen):
    return _single(request, payload)


@router.post("/group", response=RESPONSES, summary="Associate the person with a group")
@router.post("/g", response=RESPONSES, include_in_schema=False)
def group(request: HttpRequest, payload: schemas.Group):
    return _single(request, payload)


@router.post("/alias", response=RESPONSES, summary="Link a previous id to a user id")
@router.post("/a", response=RESPONSES, include_in_schema=False)
def alias(request: HttpRequest, payload: schemas.Alias):
    return _single(request, payload)


@router.post("/batch", response=RESPONSES, summary="Send many calls at once")
@router.post("/b", response=RESPONSES, include_in_schema=False)
def batch(request: HttpRequest, payload: schemas.Batch):
    for index, item in enumerate(read_json_body(request).get("batch") or []):
        check_event_size(item, where=f"batch[{index}]")
    return _accept(
        request,
        payload.batch,
        batch_sent_at=payload.sentAt,
        batch_context=payload.context,
    )
