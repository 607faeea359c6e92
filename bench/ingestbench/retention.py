"""--retention-rows: batch ingestion while a retention pass deletes old events.

Before anything is ingested, that many events received 500 days ago (processed: no
pending row, so retention may delete them) are written straight into events_event,
with the lowest ids, as years of history would have them: into their months'
partitions, made for them as the tick would have then (retention drops those months
whole), or with --retention-in-default into the default partition (retention walks
them row by row, as it does a month that keeps too many rows to drop). After the
batch phase (ingestion alone), a second batch phase runs while ``retention_run``
deletes them in another process, and the report sets the two events/s side by
side. The old rows belong to the COPY source, so the table check on the API
source's rows is unchanged.
"""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg
from benchcommon.errors import BenchBroken
from benchcommon.paths import OUT_DIR, PYTHON
from benchcommon.report import log
from benchcommon.server import Proc
from psycopg import sql

from ingestbench.config import Config
from ingestbench.setup import server_env

AGE_DAYS = 500
PROPERTIES = (
    '{"sku": "SKU-10442", "name": "Trail shoe", "price": 89.9, "currency": "EUR", '
    '"category": "shoes", "url": "https://shop.example.com/p/10442"}'
)
PRELOAD_SQL = """
INSERT INTO events_event (contact_id, source_id, type, name, properties, context,
                          timestamp, received_at, message_id)
SELECT %(contact)s, %(source)s, 'track', 'product_viewed', %(properties)s, '{}',
       at, at, 'old-' || g
FROM generate_series(1, %(rows)s) AS g,
     LATERAL (SELECT now() - make_interval(days => %(age)s)
                     + g * interval '1 millisecond' AS at) AS t
"""
RETENTION_SCRIPT = """
import json, time
from apps.privacy.retention import retention_run
print("retention: started", flush=True)
began = time.perf_counter()
run = retention_run(budget_seconds=3600)
print(json.dumps({"status": run.status, "deleted": run.deleted,
                  "seconds": time.perf_counter() - began}), flush=True)
"""


def preload_old_events(cfg: Config, source_id: int) -> None:
    """cfg.retention_rows events received AGE_DAYS ago, for one identified contact
    (an anonymous one would be purged with them, which is not what is measured)."""
    log(f"retention: writing {cfg.retention_rows:,} events {AGE_DAYS} days old")
    with psycopg.connect(cfg.database_url) as conn:
        contact = conn.execute(
            "INSERT INTO contacts_contact (email, first_name, last_name, phone,"
            " timezone, locale, attributes, email_consent, score, created_at)"
            " VALUES ('old@example.com', '', '', '', '', '', '{}', 'subscribed', 0,"
            " now()) RETURNING id"
        ).fetchone()[0]
        if not cfg.retention_in_default:
            _old_months_partitions(conn, cfg.retention_rows)
        conn.execute(
            PRELOAD_SQL,
            {
                "contact": contact,
                "source": source_id,
                "properties": PROPERTIES,
                "rows": cfg.retention_rows,
                "age": AGE_DAYS,
            },
        )
        conn.execute("ANALYZE events_event")


def _old_months_partitions(conn: psycopg.Connection, rows: int) -> None:
    """The monthly partitions the old events fall in, named as the app names them
    (apps/events/partitions.py), where the table is partitioned."""
    kind = conn.execute(
        "SELECT relkind FROM pg_class WHERE oid = to_regclass('events_event')"
    ).fetchone()
    if kind is None or kind[0] != "p":
        return
    months = conn.execute(
        "SELECT to_char(m, 'YYYY_MM'), m, m + interval '1 month' FROM generate_series("
        " date_trunc('month', (now() - make_interval(days => %(age)s)) AT TIME ZONE 'UTC'),"
        " date_trunc('month', (now() - make_interval(days => %(age)s)"
        "   + %(rows)s * interval '1 millisecond') AT TIME ZONE 'UTC'),"
        " interval '1 month') AS m",
        {"age": AGE_DAYS, "rows": rows},
    ).fetchall()
    for name, start, end in months:
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF events_event "
                "FOR VALUES FROM ({}) TO ({})"
            ).format(
                sql.Identifier(f"events_event_p{name}"),
                sql.Literal(f"{start.isoformat()} UTC"),
                sql.Literal(f"{end.isoformat()} UTC"),
            )
        )


class RetentionPass(Proc):
    """retention_run in a Django process of its own, as the RQ worker would run it."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(
            "retention",
            [PYTHON, "manage.py", "shell", "-c", RETENTION_SCRIPT],
            server_env(cfg),
            OUT_DIR / "ingest-retention.log",
            cfg.app_dir,
        )

    def wait_started(self, timeout: float = 60.0) -> None:
        """Until Django is loaded and the pass begins."""
        deadline = time.monotonic() + timeout
        while "retention: started" not in self.tail(5):
            if not self.alive() or time.monotonic() > deadline:
                raise BenchBroken(f"the retention pass did not start:\n{self.tail()}")
            time.sleep(0.05)

    def result(self, timeout: float = 900.0) -> dict[str, Any]:
        """What the pass deleted and how long it took, once it ends."""
        try:
            self.proc.wait(timeout=timeout)
        finally:
            self.stop()
        last = self.tail(1)
        if self.proc.returncode != 0 or not last.startswith("{"):
            raise BenchBroken(f"the retention pass failed:\n{self.tail()}")
        return json.loads(last)


def summary(
    cfg: Config, without: dict[str, Any], within: dict[str, Any], done: dict[str, Any]
) -> dict[str, Any]:
    deleted = done["deleted"].get("events", 0)
    if deleted != cfg.retention_rows:
        raise BenchBroken(
            f"retention deleted {deleted} of the {cfg.retention_rows} old events"
        )
    return {
        "old_rows": cfg.retention_rows,
        "deleted": deleted,
        "retention_seconds": round(done["seconds"], 3),
        "retention_rows_per_s": round(deleted / done["seconds"]),
        # How much of the batch phase the pass ran through (100: all of it).
        "overlap_pct": round(100 * min(1.0, done["seconds"] / within["seconds"]), 1),
        "batch_events_per_s_without": without["events_per_s"],
        "batch_events_per_s_with": within["events_per_s"],
        "pct_of_without": round(
            100 * within["events_per_s"] / without["events_per_s"], 1
        ),
        "latency_ms_with": within["latency_ms"],
    }
