"""The error bodies of the HTTP API, shared by ninja's exception handlers (config/api.py)
and the tracking calls' WSGI door (apps/events/wsgi.py), so both say the same thing."""

from typing import Any

from .auth import ApiError
from .schemas import Problem

# What an authenticated call may answer besides its success, for the OpenAPI
# schema: a bad body (400, also for a body that is not JSON or not an object), no or
# an unknown key (401), a key not allowed here (403), a body or event too large
# (413), the key's rate limit (429, with Retry-After).
ERROR_RESPONSES = {400: Problem, 401: Problem, 403: Problem, 413: Problem, 429: Problem}

_MESSAGE_TYPES = {"track", "identify", "page", "screen", "group", "alias"}


def field_name(loc: tuple) -> str:
    """('body', 'payload', 'batch', 3, 'track', 'event') -> 'batch[3].event'.

    ninja's locations start with ('body', <parameter>); pydantic's own do not.
    """
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


def invalid_payload(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The 400 body for validation errors: each wrong field and what is wrong."""
    detail = [
        {
            "field": field_name(tuple(e.get("loc", ()))),
            "message": e.get("msg", "invalid"),
        }
        for e in errors
    ]
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in detail[:5])
    return {"error": f"invalid payload: {summary}", "detail": detail}


def api_error(exc: ApiError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, body and extra headers for a refused call (400, 401, 403, 413, 429)."""
    headers = {"Retry-After": "1"} if exc.status == 429 else {}
    body: dict[str, Any] = {"error": exc.message}
    if detail := getattr(exc, "detail", None):
        body["detail"] = detail
    return exc.status, body, headers
