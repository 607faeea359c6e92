"""Every PostgreSQL connection has a statement, lock and idle-in-transaction timeout
from settings (DB_STATEMENT_TIMEOUT, ...), so one stuck statement cannot hold the
system; migrate runs without the statement and idle ones."""

import runpy

import psycopg
import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.db.backends.postgresql.base import DatabaseWrapper
from django.db.models.signals import pre_migrate

from config.settings import postgres_options

pytestmark = pytest.mark.usefixtures("require_postgres")


def _show(parameter: str, on=connection) -> str:
    with on.cursor() as cursor:
        cursor.execute(f"SHOW {parameter}")
        return cursor.fetchone()[0]


def _configured_connection(monkeypatch, **environment) -> DatabaseWrapper:
    """A connection made with the settings as read with ``environment`` (and no
    DB_*_TIMEOUT of the machine's own)."""
    for name in ("STATEMENT", "LOCK", "IDLE_IN_TRANSACTION"):
        monkeypatch.delenv(f"DB_{name}_TIMEOUT", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    configured = runpy.run_path(str(settings.BASE_DIR / "config" / "settings.py"))[
        "DATABASES"
    ]["default"]
    return DatabaseWrapper(
        {**connection.settings_dict, "OPTIONS": configured["OPTIONS"]}, alias="other"
    )


def test_connections_get_the_default_timeouts(monkeypatch):
    other = _configured_connection(monkeypatch)
    try:
        assert _show("statement_timeout", on=other) == "2min"
        assert _show("lock_timeout", on=other) == "30s"
        assert _show("idle_in_transaction_session_timeout", on=other) == "2min"
    finally:
        other.close()


def test_a_statement_longer_than_the_configured_timeout_is_cancelled(monkeypatch):
    # given the settings read with DB_STATEMENT_TIMEOUT=200ms in the environment
    other = _configured_connection(monkeypatch, DB_STATEMENT_TIMEOUT="200ms")
    try:
        # when a statement runs for longer on a connection made with them
        with pytest.raises(Exception) as raised, other.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(5)")
        # then PostgreSQL cancels it
        assert isinstance(raised.value.__cause__, psycopg.errors.QueryCanceled)
        assert "statement timeout" in str(raised.value)
    finally:
        other.close()


def test_options_from_the_database_url_are_kept_and_spaces_escaped():
    options = postgres_options(
        "-c search_path=nudge", lock_timeout="2 min", statement_timeout=""
    )
    assert options == "-c search_path=nudge -c lock_timeout=2\\ min"


def test_migrate_runs_without_the_statement_and_idle_timeouts():
    # given what the connection says while migrate runs
    seen = {}

    def record(**kwargs):
        seen["statement"] = _show("statement_timeout")
        seen["idle"] = _show("idle_in_transaction_session_timeout")
        seen["lock"] = _show("lock_timeout")

    pre_migrate.connect(record, dispatch_uid="test-migrate-timeouts")
    try:
        call_command("migrate", verbosity=0)
    finally:
        pre_migrate.disconnect(dispatch_uid="test-migrate-timeouts")
    # then no statement or idle timeout, but the lock timeout stays
    assert seen == {"statement": "0", "idle": "0", "lock": "30s"}
    # and afterwards the connection has its own again
    assert _show("statement_timeout") == "2min"
