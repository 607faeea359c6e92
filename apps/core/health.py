"""Probes for /healthz: each app reports its oldest due-but-unrun work, and its
dead letters (work that failed too often and is set aside until someone retries it).

Core cannot import the apps above it, so they register probes in ``ready()``: a
backlog probe returns (count, oldest due datetime or None), a dead-letter probe a
count. ``health_report`` gathers them with the state of PostgreSQL and Redis.
"""

import datetime as dt
import logging
from collections.abc import Callable

import django_rq
from django.conf import settings
from django.db import connection
from redis.exceptions import ResponseError

from . import clock
from .redis import redis_connection

logger = logging.getLogger(__name__)

BacklogProbe = Callable[[dt.datetime], tuple[int, dt.datetime | None]]

_probes: dict[str, BacklogProbe] = {}


def register_backlog(name: str, probe: BacklogProbe) -> None:
    _probes[name] = probe


def backlog_probes() -> dict[str, BacklogProbe]:
    return dict(_probes)


DeadLetterProbe = Callable[[], int]

_dead_letters: dict[str, DeadLetterProbe] = {}


def register_dead_letters(name: str, probe: DeadLetterProbe) -> None:
    _dead_letters[name] = probe


def dead_letter_probes() -> dict[str, DeadLetterProbe]:
    return dict(_dead_letters)


# -- the report -----------------------------------------------------------------------


def health_report(*, details: bool = True) -> dict:
    """Whether PostgreSQL and Redis answer, and with ``details`` queue depths, the
    oldest due work and the dead letters. "error" when either store does not answer;
    "warning" when work needs someone's attention. Failures are logged in full; the
    report names only their type and message. Without details (anyone's /healthz)
    only the two stores are asked: one SELECT and one PING, nothing an outsider can
    make expensive."""
    report: dict = {"status": "ok", "warnings": []}
    report["database"] = _database()
    report["redis"] = _redis(report["warnings"], details=details)
    if not (report["database"]["ok"] and report["redis"]["ok"]):
        report["status"] = "error"
    if details and report["database"]["ok"]:
        now = clock.now()
        report["backlog"] = {
            name: _probed(name, lambda p=probe: _backlog(p, now), report["warnings"])
            for name, probe in backlog_probes().items()
        }
        report["dead_letters"] = _dead_letter_counts(report["warnings"])
    if report["warnings"] and report["status"] == "ok":
        report["status"] = "warning"
    return report


def _backlog(probe: BacklogProbe, now: dt.datetime) -> dict:
    count, oldest = probe(now)
    return {"due": count, "oldest_due_seconds": _age(now, oldest)}


def _probed(name: str, probe: Callable[[], object], warnings: list[str]) -> object:
    """A probe's answer, or its error (and a warning): one failing probe does not
    take the report down with it."""
    try:
        return probe()
    except Exception as exc:
        logger.exception("healthz: the %s probe failed", name)
        warnings.append(f"the {name} probe failed: {_described(exc)}")
        return {"error": _described(exc)}


def _database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        logger.exception("healthz: the database does not answer")
        return {"ok": False, "error": _described(exc)}
    return {"ok": True, "vendor": connection.vendor}


def _redis(warnings: list[str], *, details: bool) -> dict:
    try:
        redis = redis_connection()
        redis.ping()
        if not details:
            return {"ok": True}
        queues = {
            name: django_rq.get_queue(name).count for name in settings.NUDGE_QUEUES
        }
    except Exception as exc:
        logger.exception("healthz: Redis does not answer")
        return {"ok": False, "error": _described(exc)}
    report = {"ok": True, "maxmemory_policy": _eviction_policy(redis), "queues": queues}
    policy = report["maxmemory_policy"]
    if policy and policy != "noeviction":
        warnings.append(
            f"Redis maxmemory-policy is {policy}: an evicting Redis silently drops "
            "jobs; set it to noeviction"
        )
    return report


def _eviction_policy(redis) -> str | None:
    """Redis's maxmemory-policy, or None where CONFIG is refused (managed Redis
    services rename or forbid it): then it cannot be checked here, and the service's
    own settings must say noeviction."""
    try:
        return redis.config_get("maxmemory-policy").get("maxmemory-policy") or None
    except ResponseError:
        return None


def _described(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


def _age(now: dt.datetime, oldest: dt.datetime | None) -> float | None:
    return round((now - oldest).total_seconds(), 1) if oldest else None


def _dead_letter_counts(warnings: list[str]) -> dict[str, int | dict]:
    """Each app's count of work set aside after failing too often; a warning for
    each that has some (nothing retries it until someone does)."""
    counts = {
        name: _probed(name, probe, warnings)
        for name, probe in dead_letter_probes().items()
    }
    for name, count in counts.items():
        if isinstance(count, int) and count:
            warnings.append(
                f"{name}: {count} dead-lettered (failed too often and set aside); "
                "see them in admin and retry them once the cause is fixed"
            )
    return counts
