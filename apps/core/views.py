import datetime as dt

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from . import clock
from .health import backlog_probes, dead_letter_probes
from .redis import redis_connection


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Whether PostgreSQL and Redis answer, queue depths, and the oldest due work."""
    report: dict = {"status": "ok", "warnings": []}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        report["database"] = {"ok": True, "vendor": connection.vendor}
    except Exception as exc:
        report["database"] = {"ok": False, "error": str(exc)}
        report["status"] = "error"

    try:
        import django_rq
        from django.conf import settings

        redis = redis_connection()
        redis.ping()
        policy = redis.config_get("maxmemory-policy").get("maxmemory-policy", "")
        queues = {
            name: django_rq.get_queue(name).count for name in settings.NUDGE_QUEUES
        }
        report["redis"] = {"ok": True, "maxmemory_policy": policy, "queues": queues}
        if policy and policy != "noeviction":
            report["warnings"].append(
                f"Redis maxmemory-policy is {policy}: an evicting Redis silently drops "
                "jobs; set it to noeviction"
            )
    except Exception as exc:
        report["redis"] = {"ok": False, "error": str(exc)}
        report["status"] = "error"

    if report["database"]["ok"]:
        now = clock.now()
        backlog = {}
        for name, probe in backlog_probes().items():
            count, oldest = probe(now)
            backlog[name] = {
                "due": count,
                "oldest_due_seconds": _age(now, oldest),
            }
        report["backlog"] = backlog
        report["dead_letters"] = _dead_letters(report["warnings"])
    if report["warnings"] and report["status"] == "ok":
        report["status"] = "warning"
    return JsonResponse(report, status=200 if report["status"] != "error" else 503)


def _age(now: dt.datetime, oldest: dt.datetime | None) -> float | None:
    return round((now - oldest).total_seconds(), 1) if oldest else None


def _dead_letters(warnings: list[str]) -> dict[str, int]:
    """Each app's count of work set aside after failing too often; a warning for
    each that has some (nothing retries it until someone does)."""
    counts = {name: probe() for name, probe in dead_letter_probes().items()}
    for name, count in counts.items():
        if count:
            warnings.append(
                f"{name}: {count} dead-lettered (failed too often and set aside); "
                "see them in admin and retry them once the cause is fixed"
            )
    return counts
