"""The HTTP API at /api/v1/: one ninja Router per app, mounted here."""

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from apps.events.api import router as tracking_router
from apps.events.auth import ApiError, BodyParser
from apps.segments.api import router as segments_router
from apps.workflows.api import router as workflows_router

api = NinjaAPI(
    title="Nudge API",
    version="1",
    description=(
        "Segment-compatible tracking API. Authenticate with the source's write key as "
        "the HTTP Basic user name (empty password) or a `writeKey` field in the body."
    ),
    urls_namespace="api-v1",
    docs_url="/docs",
    parser=BodyParser(),
)
api.add_router("/", tracking_router)
api.add_router("/", segments_router)
api.add_router("/", workflows_router)


def _field(loc: tuple) -> str:
    """('body', 'payload', 'batch', 3, 'track', 'event') -> 'batch[3].event'."""
    parts: list[str] = []
    path = list(loc[2:] if loc[:1] == ("body",) else loc)
    for i, part in enumerate(path):
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif i > 0 and isinstance(path[i - 1], int) and part in _MESSAGE_TYPES:
            continue  # the discriminated-union tag pydantic adds after an index
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts) or "body"


_MESSAGE_TYPES = {"track", "identify", "page", "screen", "group", "alias"}


@api.exception_handler(ValidationError)
def on_invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    detail = [
        {"field": _field(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")}
        for e in exc.errors
    ]
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in detail[:5])
    return api.create_response(
        request, {"error": f"invalid payload: {summary}", "detail": detail}, status=400
    )


@api.exception_handler(ApiError)
def on_api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    response = api.create_response(request, {"error": exc.message}, status=exc.status)
    if exc.status == 429:
        response["Retry-After"] = "1"
    return response


@api.exception_handler(AuthenticationError)
def on_unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return api.create_response(
        request, {"error": "missing or unknown write key"}, status=401
    )


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return api.create_response(request, {"error": exc.message}, status=exc.status_code)
