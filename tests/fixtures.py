"""Shared pytest fixtures (loaded with -p tests.fixtures from pyproject.toml).

Tests use the real PostgreSQL and Redis named by DATABASE_URL / REDIS_URL (CI sets
both); without them, SQLite and the embedded Redis that scripts/nudge.py test starts.
Where a test needs something absent here (PostgreSQL, Chromium) it skips with the
reason, except under CI, where a missing requirement is a failure.
"""

import os
import shutil

import pytest

IN_CI = bool(os.environ.get("CI"))
CHROMIUM = "/usr/bin/chromium"


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI must run every test)")
    pytest.skip(reason)


@pytest.fixture
def require_postgres(db):
    from django.db import connection

    if connection.vendor != "postgresql":
        _missing("needs PostgreSQL: set DATABASE_URL=postgres://...")


@pytest.fixture(scope="session")
def chromium_path():
    if not os.path.exists(CHROMIUM) and not shutil.which("chromium"):
        _missing("needs Debian's chromium at /usr/bin/chromium")
    return CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")


@pytest.fixture(autouse=True)
def _empty_redis():
    """Every test starts with empty queues (and no rate-limit counters)."""
    import django_rq

    connection_ = django_rq.get_connection("default")
    connection_.flushdb()
    yield


@pytest.fixture(autouse=True)
def _fresh_source_cache():
    from apps.events.auth import forget_cached_sources

    forget_cached_sources()
    yield
    forget_cached_sources()


@pytest.fixture
def run_jobs():
    """Run every queued job in this process with a real RQ SimpleWorker, until empty."""
    import django_rq
    from django.conf import settings
    from rq import SimpleWorker

    def run(queues: list[str] | None = None) -> int:
        names = queues or settings.NUDGE_QUEUES
        worker = SimpleWorker(
            [django_rq.get_queue(name) for name in names],
            connection=django_rq.get_connection("default"),
        )
        done = 0
        while any(django_rq.get_queue(name).count for name in names):
            worker.work(burst=True, logging_level="WARNING")
            done += 1
        return done

    return run


@pytest.fixture
def browser_source(db):
    from apps.events.services import source_create

    source, key = source_create(name="Web")
    source.key = key
    return source


@pytest.fixture
def server_source(db):
    from apps.events.models import Source
    from apps.events.services import source_create

    source, key = source_create(name="Backend", kind=Source.Kind.SERVER)
    source.key = key
    return source
