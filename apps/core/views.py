import hmac

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .health import health_report


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """ok / not ok (200 / 503) for anyone, such as a load balancer; the details
    (queues, oldest due work, dead letters, warnings, errors) only for a logged-in
    staff user or with ``Authorization: Bearer <NUDGE_HEALTH_TOKEN>``: they tell an
    outsider too much about the system."""
    bearer = _bearer_token(request)
    if bearer is not None and not _is_the_health_token(bearer):
        return JsonResponse(
            {"error": "this bearer token is not NUDGE_HEALTH_TOKEN"}, status=401
        )
    details = bearer is not None or request.user.is_staff
    report = health_report(details=details)
    status = 503 if report["status"] == "error" else 200
    if not details:
        return JsonResponse(
            {"status": "ok" if status == 200 else "error"}, status=status
        )
    return JsonResponse(report, status=status)


def _bearer_token(request: HttpRequest) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _is_the_health_token(token: str) -> bool:
    expected = settings.NUDGE_HEALTH_TOKEN
    # compare_digest: the time taken says nothing about how much of it matched
    return bool(expected) and hmac.compare_digest(token.encode(), expected.encode())
