"""Admin lists of tables that grow with traffic (events, messages, enrollments):
paging that never counts the whole table.

Django's admin paginator runs ``COUNT(*)`` over the list, filters applied, before
it shows a page: over a billion events that reads the whole table on every visit.
This one counts no further than the rows it offers, and over the whole table reads
PostgreSQL's own estimate instead. Pages past those rows would each be an OFFSET
scan of the table too; a search or a filter narrows the list instead.
"""

from django.core.paginator import Paginator
from django.db import connections
from django.utils.functional import cached_property

# The rows a list offers, in pages: 100 pages of the admin's 100 rows.
MAX_ROWS = 10_000


class LargeTablePaginator(Paginator):
    max_rows = MAX_ROWS

    @cached_property
    def _counted(self) -> int:
        """The rows in the list, counted up to max_rows + 1 ("more")."""
        estimate = self.estimate
        if estimate is not None and estimate > self.max_rows:
            return self.max_rows + 1
        # COUNT(*) over a subquery with a LIMIT: it stops at max_rows + 1.
        return self.object_list[: self.max_rows + 1].count()

    @cached_property
    def count(self) -> int:
        return min(self._counted, self.max_rows)

    @property
    def more(self) -> bool:
        """Whether the list holds more rows than it offers."""
        return self._counted > self.max_rows

    @cached_property
    def estimate(self) -> int | None:
        """The table's rows as PostgreSQL last estimated them (ANALYZE or VACUUM),
        for an unfiltered list; None when filtered, on SQLite, or never estimated."""
        queryset = self.object_list
        if getattr(queryset, "query", None) is None or queryset.query.where:
            return None
        return table_estimate(queryset.model._meta.db_table, using=queryset.db)


def table_estimate(table: str, *, using: str = "default") -> int | None:
    """pg_class.reltuples of the table, summed over its partitions if it has any;
    None on SQLite or where no partition was ever analyzed (-1 since PostgreSQL 14).
    An estimate: it can be as old as the last ANALYZE."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        # A plain table, or the leaves of a partitioned one (pg_partition_tree
        # lists nothing for a plain table).
        cursor.execute(
            "SELECT SUM(reltuples) FILTER (WHERE reltuples >= 0) FROM pg_class "
            "WHERE relkind = 'r' AND (oid = %s::regclass OR oid IN "
            "(SELECT relid FROM pg_partition_tree(%s::regclass) WHERE isleaf))",
            [connection.ops.quote_name(table)] * 2,
        )
        (rows,) = cursor.fetchone()
    return None if rows is None else int(rows)
