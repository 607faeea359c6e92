"""Reading what a call's keys name (identities and contacts) in one query, and the
advisory locks a writing call takes on those keys."""

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections

from apps.core.db import postgres_cursor

from ..models import Contact
from .traits import Sighting

# The advisory-lock class for identity keys ("id" in ASCII).
IDENTITY_LOCK_CLASS = 0x6964


def lock_identities(keys: set[str]) -> None:
    """Serialise concurrent requests about the same person (PostgreSQL).

    Two batches creating the same new visitor at once would otherwise both insert
    their own contact and one would fail on the identity's unique index. Transaction-
    scoped locks on the keys' hashes, taken in one order, make the second wait and
    then see the first's rows. SQLite writers are serialised already.
    """
    if not keys or connection.vendor != "postgresql":
        return
    with postgres_cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%b::integer, h) FROM "
            "(SELECT DISTINCT hashtext(k) AS h FROM unnest(%b::text[]) AS k) hashes "
            "ORDER BY h",
            [IDENTITY_LOCK_CLASS, sorted(keys)],
        )


@dataclass(frozen=True)
class Keys:
    """Every identity key one call names."""

    anonymous_ids: frozenset[str]
    user_ids: frozenset[str]
    emails: frozenset[str]

    @classmethod
    def of(cls, sightings: list["Sighting"]) -> "Keys":
        anonymous_ids, user_ids, emails = set(), set(), set()
        for s in sightings:
            if s.anonymous_id:
                anonymous_ids.add(s.anonymous_id)
            if s.user_id:
                user_ids.add(s.user_id)
            if s.previous_id:  # alias: either kind of id
                anonymous_ids.add(s.previous_id)
                user_ids.add(s.previous_id)
            if s.email:
                emails.add(s.email)
        return cls(frozenset(anonymous_ids), frozenset(user_ids), frozenset(emails))

    @property
    def all(self) -> set[str]:
        return set(self.anonymous_ids | self.user_ids | self.emails)


def load_visitors(anonymous_ids: frozenset[str]) -> dict[str, tuple[int, str, str]]:
    """For each of these anonymous ids that is known: its contact's id, timezone and
    locale (PostgreSQL). All that a call naming nobody but visitors needs to know
    (see lookup_identities): load_rows's probes without building contacts."""
    keys = Keys(anonymous_ids, frozenset(), frozenset())
    rows = _fetch_rows(keys, "c.id, c.timezone, c.locale")
    return {key: (pk, tz, locale) for key, pk, tz, locale in rows}


@cache
def _contact_columns(vendor: str) -> tuple[str, list[tuple[int, list[Callable]]]]:
    """The SELECT list of every Contact column, and the converters (JSON, dates on
    SQLite) the ORM would apply to each, as (position, converters)."""
    fields = Contact._meta.concrete_fields
    select = ", ".join(f"c.{connection.ops.quote_name(f.column)}" for f in fields)
    converters = []
    for position, f in enumerate(fields):
        col = f.get_col("c")
        found = connection.ops.get_db_converters(col) + f.get_db_converters(connection)
        if found:
            converters.append((position, found))
    return select, converters


# Where each kind of key leads: the tables, and the column a key must equal. Each
# key names at most one contact (the columns are unique), hence the LIMIT 1 below.
_KEY_LOOKUPS = {
    "anonymous_ids": (
        "contacts_identity i JOIN contacts_contact c ON c.id = i.contact_id",
        "i.anonymous_id",
    ),
    "user_ids": ("contacts_contact c", "c.external_id"),
    # lower(email) on non-NULL emails: the unique index's expression and predicate.
    "emails": ("contacts_contact c", "c.email IS NOT NULL AND lower(c.email)"),
}


def load_rows(keys: Keys) -> set[tuple]:
    """(anonymous id or None, *contact columns) for every identity and contact the
    keys name, in one query; a contact found by several keys comes more than once."""
    return set(_fetch_rows(keys))


def _fetch_rows(keys: Keys, columns: str | None = None) -> list[tuple]:
    """load_rows's query, selecting ``columns`` of each contact (default: all)."""
    db = connections[DEFAULT_DB_ALIAS]
    postgres = db.vendor == "postgresql"
    shape: list[tuple[str, int]] = []
    params: list[Any] = []
    for kind in _KEY_LOOKUPS:
        values = sorted(getattr(keys, kind))
        if not values:
            continue
        if postgres and len(values) > 1:
            shape.append((kind, 0))  # 0: any number of keys, as one array
            params.append(values)
        else:
            shape.append((kind, len(values)))
            params.extend(values)
    if not shape:
        return []
    with postgres_cursor() if postgres else db.cursor() as cursor:
        cursor.execute(_rows_sql(db.vendor, tuple(shape), columns), params)
        return cursor.fetchall()


@cache
def _rows_sql(
    vendor: str, shape: tuple[tuple[str, int], ...], columns: str | None = None
) -> str:
    """load_rows's query for these kinds of key, each with this many keys (0: an
    array of them), selecting ``columns`` (default: every contact column). Built
    from fixed fragments (column names from the model) and placeholders only: every
    value is a bound parameter."""
    select = columns or _contact_columns(vendor)[0]
    parts: list[str] = []
    for kind, count in shape:
        tables, column = _KEY_LOOKUPS[kind]
        if count == 0:
            # One index probe per key, whatever the statistics say: on tables that
            # grew since the last ANALYZE (a new install, a bench), an IN list is
            # planned as a sequential scan and a hash join, slower with every row.
            first = "k.key" if kind == "anonymous_ids" else "NULL"
            parts.append(
                f"SELECT {first}, {select} FROM unnest(%b::text[]) AS k(key) "  # noqa: S608
                f"CROSS JOIN LATERAL (SELECT {select} FROM {tables} "
                f"WHERE {column} = k.key LIMIT 1) c"
            )
        else:  # a few keys (one, on PostgreSQL) are index probes in any case
            first = "i.anonymous_id" if kind == "anonymous_ids" else "NULL"
            placeholder = "%b" if vendor == "postgresql" else "%s"
            parts.append(
                f"SELECT {first}, {select} FROM {tables} "  # noqa: S608
                f"WHERE {column} IN ({', '.join([placeholder] * count)})"
            )
    return " UNION ALL ".join(parts)


def contacts_from_rows(rows: set[tuple]) -> dict[int, Contact]:
    """The distinct contacts of ``load_rows``'s rows, as the ORM would build them."""
    db = connections[DEFAULT_DB_ALIAS]  # once: the proxy looks it up on each use
    _, converters = _contact_columns(db.vendor)
    contacts: dict[int, Contact] = {}
    for row in rows:
        if row[1] in contacts:
            continue
        values = list(row[1:])
        for position, found in converters:
            for convert in found:
                values[position] = convert(values[position], None, db)
        contacts[row[1]] = Contact.from_db(db.alias, None, values)
    return contacts
