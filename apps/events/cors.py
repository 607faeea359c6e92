from django.http import HttpRequest

from .auth import origin_allowed


def origin_allowed_by_a_source(
    sender: object, request: HttpRequest, **kwargs: object
) -> bool:
    """django-cors-headers hook: CORS for /api/v1/ from any origin a Source lists.

    A preflight carries no write key, so it is allowed for the union of all enabled
    sources' origins; the request itself is then checked against its own source.
    """
    return origin_allowed(request.headers.get("Origin"))
