"""Per-process caches of model state that every way of changing the rows reaches.

A worker keeps what it built from a few hundred rows (the active workflows by trigger
event, the dynamic segments with what they read) instead of building it for every
job. Such a cache is only as good as its invalidation: ``save()``, ``.update()``, a
migration, the admin of another machine all change the rows, and only the database
sees every one of them. So the cache asks the database, each time it is read, for a
fingerprint of exactly the columns it depends on (a count and a digest of the rows,
in id order) and rebuilds when that changes. No ``updated_at`` to forget, no signal
that ``.update()`` skips.
"""

import hashlib
import threading
from collections.abc import Callable

from django.db import connections, router
from django.db.models import F, Model, Q

# The primary key's name in the fingerprint query (an annotation: a name we choose).
_KEY = "fingerprint_key"


class RowsCache[T]:
    """``build()``'s result, rebuilt whenever a row of ``model`` matching ``where``
    appears, disappears or changes in one of ``columns`` (field names)."""

    def __init__(
        self,
        *,
        model: type[Model],
        columns: tuple[str, ...],
        build: Callable[[], T],
        where: Q | None = None,
    ) -> None:
        self.model = model
        self.columns = columns
        self.build = build
        self.where = where or Q()
        self._fingerprint: tuple | None = None
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        fingerprint = self.fingerprint()
        with self._lock:
            if self._fingerprint == fingerprint:
                return self._value  # type: ignore[return-value]
        # Built outside the lock (it queries); a thread that builds the same thing at
        # the same time only wastes a query.
        value = self.build()
        with self._lock:
            self._fingerprint, self._value = fingerprint, value
        return value

    def forget(self) -> None:
        with self._lock:
            self._fingerprint, self._value = None, None

    def fingerprint(self) -> tuple:
        """(rows, digest of their columns): one query, cheap for a few hundred rows."""
        rows = (
            self.model._default_manager.filter(self.where)
            .annotate(**{_KEY: F("pk")})
            .order_by()
            .values_list(_KEY, *self.columns)
        )
        alias = router.db_for_read(self.model)
        if connections[alias].vendor == "postgresql":
            return _fingerprint_in_postgres(rows, alias)
        digest = hashlib.md5(usedforsecurity=False)
        count = 0
        for row in rows.order_by(_KEY):
            digest.update(repr(row).encode())
            count += 1
        return count, digest.hexdigest()


def _fingerprint_in_postgres(rows, alias: str) -> tuple:
    # A row's text form (rows::text) quotes and marks NULLs, so two different rows
    # never read the same; jsonb's text form is canonical.
    sql, params = rows.query.sql_with_params()
    quoted = connections[alias].ops.quote_name(_KEY)
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT count(*), md5(coalesce(string_agg(rows::text, chr(10) "  # noqa: S608
            f"ORDER BY rows.{quoted}), '')) FROM ({sql}) AS rows",
            params,
        )
        return tuple(cursor.fetchone())
