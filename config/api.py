"""The HTTP API at /api/v1/: one ninja Router per app, mounted here."""

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from apps.campaigns.api import router as topics_router
from apps.events.api import router as tracking_router
from apps.events.auth import ApiError, BodyParser
from apps.events.problems import api_error, invalid_payload
from apps.privacy.api import router as privacy_router
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
api.add_router("/", topics_router)
api.add_router("/", privacy_router)


@api.exception_handler(ValidationError)
def on_invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    return api.create_response(request, invalid_payload(exc.errors), status=400)


@api.exception_handler(ApiError)
def on_api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    status, body, headers = api_error(exc)
    response = api.create_response(request, body, status=status)
    for name, value in headers.items():
        response[name] = value
    return response


@api.exception_handler(AuthenticationError)
def on_unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return api.create_response(
        request, {"error": "missing or unknown write key"}, status=401
    )


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return api.create_response(request, {"error": exc.message}, status=exc.status_code)
