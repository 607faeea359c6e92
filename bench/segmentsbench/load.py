"""The load: the database (or the one kept by --reuse-data), COPY ... FREEZE with
the secondary indexes dropped and rebuilt, and what was loaded."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import multiprocessing
import os
import threading
import time
from collections import deque
from typing import Any

import orjson
import psycopg
from benchcommon.databases import (
    app_env,
    django_migrate,
    drop_and_create,
    droppable_name,
)
from benchcommon.errors import SetupFailed
from benchcommon.report import log
from psycopg import sql

from segmentsbench.config import DAYS, NOW, Config
from segmentsbench.data import (
    CONTACT_CHUNK,
    CONTACT_COLUMNS,
    EVENT_COLUMNS,
    EventSpec,
    generate,
    init_generator,
)


def prepare_database(cfg: Config) -> bool:
    """Recreate the database; with --reuse-data keep it if it holds a load of this
    size. True if the data is already there."""
    name = droppable_name(cfg)
    if cfg.reuse_data:
        loaded = _loaded_meta(cfg)
        if loaded and (loaded["contacts"], loaded["events"], loaded["seed"]) == (
            cfg.contacts,
            cfg.events,
            cfg.seed,
        ):
            return True
        log("--reuse-data: no load of this size and seed; loading afresh")
    drop_and_create(cfg.database_url, name)
    return False


def setup_django(cfg: Config) -> None:
    """Django in this process: settings read the environment at import."""
    os.environ.update(app_env(cfg, os.environ.get("BENCH_LOG_LEVEL", "WARNING")))
    django_migrate()


def _loaded_meta(cfg: Config) -> dict[str, int] | None:
    try:
        with psycopg.connect(cfg.database_url) as c:
            row = c.execute("SELECT meta FROM bench_segments_load").fetchone()
    except psycopg.Error:
        return None
    return row[0] if row else None


def copy_table(
    url: str, table: str, columns: str, chunks: int, spec: EventSpec, pool: Any
) -> int:
    """TRUNCATE and one COPY ... FREEZE in the same transaction (rows go in frozen
    and all-visible, as VACUUM would leave them), fed in order by the ``pool`` of
    processes that encode the chunks. Returns the bytes sent."""
    size = 0
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SET synchronous_commit = off")
        # CASCADE: the empty tables that point at contacts (the FKs are dropped).
        cur.execute(sql.SQL("TRUNCATE {} CASCADE").format(sql.Identifier(table)))
        todo = iter(range(chunks))
        # A few chunks in flight: the pool keeps encoding while COPY takes one in.
        pending = deque(
            pool.apply_async(generate, (table, spec, k))
            for k in itertools.islice(todo, 4)
        )
        # A partitioned table (events) takes no FREEZE: _finish_load vacuums it.
        freeze = "" if _partitioned(cur, table) else " WITH (FREEZE)"
        copy_sql = f"COPY {table} ({columns}) FROM STDIN{freeze}"
        with cur.copy(copy_sql) as cp:
            while pending:
                block = pending.popleft().get()
                for k in itertools.islice(todo, 1):
                    pending.append(pool.apply_async(generate, (table, spec, k)))
                size += len(block)
                cp.write(block)
        conn.commit()
    return size


def _partitioned(cur: Any, table: str) -> bool:
    cur.execute("SELECT relkind = 'p' FROM pg_class WHERE oid = %s::regclass", (table,))
    return cur.fetchone()[0]


# -- the load --------------------------------------------------------------------------

LOADED_TABLES = ("contacts_contact", "events_event")


def schema_of(conn: psycopg.Connection) -> dict[str, Any]:
    """Secondary indexes and constraints (not the primary keys) of LOADED_TABLES."""
    # A partitioned table's index reads "ON ONLY events_event": built so, it would
    # cover the parent alone. Without ONLY it is built on every partition.
    indexes = conn.execute(
        "SELECT i.indexrelid::regclass::text,"
        " replace(pg_get_indexdef(i.indexrelid), ' ON ONLY ', ' ON '),"
        " i.indrelid::regclass::text, c.conname IS NOT NULL, c.condeferrable,"
        " c.condeferred"
        " FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid"
        " AND c.contype = 'u'"
        " WHERE i.indrelid::regclass::text = ANY(%s) AND NOT i.indisprimary"
        " ORDER BY 1",
        (list(LOADED_TABLES),),
    ).fetchall()
    fks = conn.execute(
        "SELECT conname, conrelid::regclass::text, pg_get_constraintdef(oid)"
        " FROM pg_constraint WHERE contype = 'f'"
        " AND conrelid::regclass::text = ANY(%s) ORDER BY 1",
        (list(LOADED_TABLES),),
    ).fetchall()
    return {"indexes": [list(r) for r in indexes], "fks": [list(r) for r in fks]}


def drop_secondary(conn: psycopg.Connection, schema: dict[str, Any]) -> None:
    for name, table, _definition in schema["fks"]:
        conn.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(table), sql.Identifier(name)
            )
        )
    for name, _definition, table, is_constraint, *_ in schema["indexes"]:
        if is_constraint:
            conn.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    sql.Identifier(table), sql.Identifier(name)
                )
            )
        else:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    conn.commit()


def restore_secondary(url: str, schema: dict[str, Any], parallel: int) -> float:
    """Rebuild the indexes (``parallel`` at a time), then constraints and FKs."""
    began = time.perf_counter()
    todo = [r[1] for r in schema["indexes"]]
    # Events' indexes first: they are the big ones.
    todo.sort(key=lambda d: "events_event" not in d)
    lock = threading.Lock()
    errors: list[str] = []

    def builder() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET maintenance_work_mem = '1GB'")
            conn.execute("SET max_parallel_maintenance_workers = 0")
            while True:
                with lock:
                    if not todo or errors:
                        return
                    definition = todo.pop(0)
                try:
                    conn.execute(definition)
                except psycopg.Error as exc:
                    with lock:
                        errors.append(f"{definition}: {exc}")

    threads = [threading.Thread(target=builder) for _ in range(max(1, parallel))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SetupFailed("rebuilding indexes failed: " + "; ".join(errors))
    with psycopg.connect(url, autocommit=True) as conn:
        for name, _definition, table, is_constraint, deferrable, deferred in schema[
            "indexes"
        ]:
            if is_constraint:
                when = " DEFERRABLE" if deferrable else ""
                when += " INITIALLY DEFERRED" if deferred else ""
                conn.execute(
                    sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} UNIQUE USING INDEX {}")
                    .format(
                        sql.Identifier(table),
                        sql.Identifier(name),
                        sql.Identifier(name),
                    )
                    .as_string(conn)
                    + when
                )
        for name, table, definition in schema["fks"]:
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ")
                .format(sql.Identifier(table), sql.Identifier(name))
                .as_string(conn)
                + definition
            )
    return time.perf_counter() - began


def load(cfg: Config) -> dict[str, Any]:
    """COPY contacts and events; returns what was loaded and how long it took."""
    from apps.events.models import Source

    source = Source.objects.create(name="bench-site", kind=Source.Kind.SERVER)
    spec = EventSpec(cfg.contacts, cfg.events, cfg.seed, source.pk)
    url = cfg.database_url
    _partitions_for_the_data()
    with psycopg.connect(url) as conn:
        schema = schema_of(conn)
        drop_secondary(conn, schema)
    out = _copy_rows(cfg, spec)

    log("rebuilding indexes and constraints")
    out["index_seconds"] = round(restore_secondary(url, schema, parallel=2), 2)
    began = time.perf_counter()
    _finish_load(cfg, schema)
    out["analyze_seconds"] = round(time.perf_counter() - began, 2)
    return out


def _partitions_for_the_data() -> None:
    """The events' months get their partitions before the COPY, as the tick would
    have made them as the events arrived (else they would all land in the default
    partition)."""
    from django.db import transaction

    from apps.events.partitions import (
        add_months,
        is_partitioned,
        month_of,
        monthly_partitions,
        partition_create,
    )

    if not is_partitioned():
        return
    month, last = month_of(NOW - dt.timedelta(days=DAYS + 1)), month_of(NOW)
    with transaction.atomic():
        existing = set(monthly_partitions().values())
        while month <= last:
            if month not in existing:
                partition_create(month)
            month = add_months(month, 1)


def _copy_rows(cfg: Config, spec: EventSpec) -> dict[str, Any]:
    """The contacts' and the events' COPY, the rows encoded by a pool of forked
    processes; their seconds, and the events' rate and size."""
    from django.db import connections

    url = cfg.database_url
    out: dict[str, Any] = {}
    connections.close_all()  # no Django connection crosses the fork
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(cfg.generators, init_generator, (cfg.seed,)) as pool:
        began = time.perf_counter()
        log(f"COPY {cfg.contacts:,} contacts")
        chunks = math.ceil(cfg.contacts / CONTACT_CHUNK)
        copy_table(url, "contacts_contact", CONTACT_COLUMNS, chunks, spec, pool)
        out["contacts_seconds"] = round(time.perf_counter() - began, 2)

        began = time.perf_counter()
        log(
            f"COPY {cfg.events:,} events ({spec.chunks} chunks, one stream, "
            f"{cfg.generators} processes encoding)"
        )
        size = copy_table(url, "events_event", EVENT_COLUMNS, spec.chunks, spec, pool)
    seconds = time.perf_counter() - began
    out["events_seconds"] = round(seconds, 2)
    out["events_per_s"] = round(cfg.events / seconds)
    out["events_mb"] = round(size / 1e6)
    return out


def _finish_load(cfg: Config, schema: dict[str, Any]) -> None:
    """Sequences past the loaded ids, ANALYZE, the check that the rebuilt schema is
    the app's, a CHECKPOINT, and the table recording what was loaded (for
    --reuse-data)."""
    with psycopg.connect(cfg.database_url, autocommit=True) as conn:
        for table in LOADED_TABLES:
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" (SELECT max(id) FROM {table}))"
            )
        with conn.cursor() as cur:
            if _partitioned(cur, "events_event"):
                log(
                    "VACUUM (FREEZE) events_event (COPY FREEZE refuses a partitioned table)"
                )
                conn.execute("VACUUM (FREEZE) events_event")
        log("ANALYZE")
        conn.execute("ANALYZE contacts_contact, events_event")
        if schema_of(conn) != schema:
            raise SetupFailed("the rebuilt indexes differ from the app's schema")
        conn.execute("CHECKPOINT")
        meta = {
            "contacts": cfg.contacts,
            "events": cfg.events,
            "seed": cfg.seed,
            "max_event_id": cfg.events,  # ids 1..M
        }
        conn.execute("CREATE TABLE bench_segments_load (meta jsonb)")
        conn.execute(
            "INSERT INTO bench_segments_load VALUES (%s)",
            (orjson.dumps(meta).decode(),),
        )


def reset_measurements(cfg: Config) -> None:
    """--reuse-data: remove what an earlier run's measurements added."""
    meta = _loaded_meta(cfg) or {}
    with psycopg.connect(cfg.database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM segments_segmentmembership")
        conn.execute("DELETE FROM segments_segmentrefresh")
        conn.execute("DELETE FROM segments_segment")
        conn.execute("DELETE FROM events_event WHERE id > %s", (meta["max_event_id"],))
        conn.execute("VACUUM (ANALYZE) events_event, segments_segmentmembership")


def data_stats() -> dict[str, Any]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM contacts_contact")
        contacts = cur.fetchone()[0]
        cur.execute(
            "SELECT name, count(*) FROM events_event GROUP BY name ORDER BY 2 DESC"
        )
        names = dict(cur.fetchall())
        cur.execute(
            "SELECT count(DISTINCT contact_id), min(timestamp), max(timestamp)"
            " FROM events_event"
        )
        active, first, last = cur.fetchone()
        cur.execute(
            "SELECT pg_size_pretty(pg_table_size('events_event')),"
            " pg_size_pretty(pg_indexes_size('events_event')),"
            " pg_size_pretty(pg_total_relation_size('contacts_contact'))"
        )
        table, indexes, contacts_size = cur.fetchone()
        cur.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('shared_buffers',"
            " 'work_mem', 'jit', 'max_parallel_workers_per_gather',"
            " 'effective_cache_size', 'random_page_cost', 'server_version',"
            " 'autovacuum')"
        )
        settings = dict(cur.fetchall())
    return {
        "contacts": contacts,
        "contacts_with_events": active,
        "events": sum(names.values()),
        "events_by_name": names,
        "first_event": first.isoformat(),
        "last_event": last.isoformat(),
        "events_table": table,
        "events_indexes": indexes,
        "contacts_table_with_indexes": contacts_size,
        "pg_settings": settings,
    }
