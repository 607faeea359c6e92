"""Database helpers for the few hot paths that go below the ORM (PostgreSQL)."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import orjson
import psycopg
from django.db import (
    DEFAULT_DB_ALIAS,
    InterfaceError,
    OperationalError,
    connection,
    connections,
    models,
)

# The database's trouble, not the work's: the same work tried again later succeeds,
# so it must not count against the work. By SQLSTATE: a serialization failure or a
# deadlock (40001, 40P01), a lock timeout (55P03), a lost or refused connection
# (class 08), too little disk, memory or connections (class 53), a server shutting
# down (57P01-57P03). Not a statement timeout (57014) nor a program limit (class 54,
# an index row too big): those come back with the same data every time.
TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03"}
TRANSIENT_SQLSTATE_CLASSES = {"08", "53"}


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is the database's passing trouble (see TRANSIENT_SQLSTATES)."""
    if isinstance(exc, InterfaceError | psycopg.InterfaceError):
        return True  # the connection was already closed
    if not isinstance(exc, OperationalError | psycopg.OperationalError):
        return False
    cause = exc if isinstance(exc, psycopg.Error) else exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate is None:
        # no answer from a server: a connection that failed or broke, or SQLite's
        # "database is locked" (its writers wait their turn)
        return True
    return sqlstate in TRANSIENT_SQLSTATES or sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES


@contextmanager
def postgres_cursor() -> Iterator[psycopg.Cursor]:
    """A cursor of the psycopg connection itself (PostgreSQL only).

    Django's cursors bind parameters on the client, quoting every value into the SQL
    text (in Python, for lists). This one sends them apart, in binary where the SQL
    says %b. Django's health check and error classes still apply.
    """
    db = connections[DEFAULT_DB_ALIAS]  # once: each use of the proxy looks it up
    db.close_if_health_check_failed()
    db.ensure_connection()
    with db.wrap_database_errors, psycopg.Cursor(db.connection) as cursor:
        yield cursor


def insert_rows(model: type[models.Model], objects: list[models.Model]) -> None:
    """Insert new rows and set their primary keys, as bulk_create does.

    On PostgreSQL the rows go as one JSON document that jsonb_populate_recordset
    turns into the table's row type: for the handful of contacts and identities a
    call creates, bulk_create's per-statement and per-field preparation cost more
    than the insert (bench/ingest.py).
    """
    db = connections[DEFAULT_DB_ALIAS]
    plan = _insert_plan(model, db.vendor)
    if plan is None:
        model.objects.bulk_create(objects)
        return
    fields, sql = plan
    rows = [{f.column: f.pre_save(obj, add=True) for f in fields} for obj in objects]
    with postgres_cursor() as cursor:
        cursor.execute(sql, [json_document(rows)])
        for obj, (pk,) in zip(objects, cursor.fetchall(), strict=True):
            obj.pk = pk
            obj._state.adding = False
            obj._state.db = db.alias


@cache
def _insert_plan(
    model: type[models.Model], vendor: str
) -> tuple[list[models.Field], str] | None:
    """The fields insert_rows writes and its statement; None where it leaves the
    work to bulk_create (not PostgreSQL, or a field with a database default)."""
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    if vendor != "postgresql" or any(f.has_db_default() for f in fields):
        return None
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    table = quote(model._meta.db_table)
    # RETURNING gives the rows in the order of the document, which bulk_create
    # relies on too.
    sql = (
        f"INSERT INTO {table} ({columns}) SELECT {columns} "  # noqa: S608
        f"FROM jsonb_populate_recordset(NULL::{table}, %b::jsonb) "
        f"RETURNING {quote(model._meta.pk.column)}"
    )
    return fields, sql


def json_document(rows: list[dict[str, Any]]) -> str:
    """Rows as one JSON document for jsonb_to_recordset / jsonb_populate_recordset."""
    try:
        return orjson.dumps(rows, default=str).decode()
    except TypeError:  # what orjson refuses (integers past 64 bits), json takes
        return json.dumps(rows, default=str)
