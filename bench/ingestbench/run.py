"""The run: set-up, the server, the phases in order, then the checks against the
table."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import redis
from benchcommon.databases import db_name, flush_redis, recreate_database
from benchcommon.paths import OUT_DIR
from benchcommon.report import log, machine_info, python_reference_ms, report_head
from benchcommon.server import basic

from ingestbench.config import Config
from ingestbench.cpu import Meter, PgMonitor
from ingestbench.ledger import Ledger
from ingestbench.phases import Phases, build_requests
from ingestbench.retention import preload_old_events
from ingestbench.setup import Server, create_sources, manage

SENTINEL = "nudge-bench:sentinel"


def run(cfg: Config) -> dict[str, Any]:
    started = time.perf_counter()
    machine = {**machine_info(), "reference_loop_ms": [python_reference_ms()]}
    report = report_head(cfg, machine=machine, app_dir=str(cfg.app_dir))
    ledger = Ledger()

    rds, sources = prepare(cfg)
    if cfg.retention_rows:
        # First: old rows have the lowest ids, as they would in a real table.
        preload_old_events(cfg, sources["copy_id"])
    key = sources["api_key"]
    headers = {"Content-Type": "application/json", "Authorization": basic(key)}
    bad_key = "sk_not-a-real-key"
    bad_headers = {**headers, "Authorization": basic(bad_key)}

    log("building request bodies")
    reqs = build_requests(cfg, report)

    server = Server(cfg, OUT_DIR / "ingest-server.log")
    report["server_command"] = "python " + " ".join(server.command[1:])
    log(
        f"starting granian: {cfg.workers} workers x {cfg.blocking_threads} threads, "
        f"backpressure {cfg.backpressure}, port {server.port}"
    )
    server.start()
    monitor = None
    try:
        server.wait_ready(key=bad_key)
        monitor = PgMonitor(cfg)
        meter = Meter(server, monitor, report["warnings"])
        phases = Phases(cfg, report, ledger, meter, server.port, headers, bad_headers)
        phases.batch(reqs)
        if cfg.retention_rows:
            phases.batch_with_retention(reqs)
        phases.copy(sources["copy_id"], reqs.users)
        phases.floor(reqs)
        phases.track(reqs)
        phases.open_loop(reqs)
    finally:
        log("stopping the server")
        server.stop()
        if monitor is not None:
            monitor.close()

    check(cfg, report, ledger, rds, sources["api_id"])
    report["errors"] = ledger.errors
    report["problems"] = ledger.problems
    report["machine"]["reference_loop_ms"].append(python_reference_ms())
    report["seconds_total"] = round(time.perf_counter() - started, 1)
    return report


def prepare(cfg: Config) -> tuple[redis.Redis, dict[str, Any]]:
    """A new database and an empty Redis db, migrated; the two sources."""
    log(
        f"database {db_name(cfg.database_url)}: recreating; "
        f"Redis {cfg.redis_url}: flushing"
    )
    recreate_database(cfg)
    rds = flush_redis(cfg)
    # Someone else's FLUSHALL (or FLUSHDB on this db) during the run would drop our
    # jobs; this key tells that apart from ingestion losing them.
    rds.set(SENTINEL, "1")
    log(f"migrating ({cfg.app_dir})")
    manage(cfg, "migrate", "--no-input", "-v", "0")
    return rds, create_sources(cfg)


def check(
    cfg: Config,
    report: dict[str, Any],
    ledger: Ledger,
    rds: redis.Redis,
    api_source: int,
) -> None:
    """(5) correctness: every accepted event stored once, one job per request."""
    with psycopg.connect(cfg.database_url) as conn:
        stored = [
            r[0]
            for r in conn.execute(
                "SELECT message_id FROM events_event WHERE source_id = %s",
                (api_source,),
            )
        ]
        contacts = conn.execute("SELECT count(*) FROM contacts_contact").fetchone()[0]
    stored_set = set(stored)
    lost = len(ledger.message_ids - stored_set)
    unexpected = len(stored_set - ledger.message_ids)
    doubled = len(stored) - len(stored_set)
    if lost or unexpected or doubled:
        ledger.problems.append(
            f"table check: {len(ledger.message_ids)} events accepted, "
            f"{len(stored)} rows: {lost} lost, {unexpected} never acknowledged, "
            f"{doubled} stored twice"
        )
    jobs = rds.llen("rq:queue:events")
    if not rds.exists(SENTINEL):
        jobs = None
        report["warnings"].append(
            f"Redis db {cfg.redis_url} was flushed by another process during the "
            "run: RQ jobs not checked (give the benchmark a Redis db nobody else uses)"
        )
    elif jobs != ledger.requests:
        ledger.problems.append(
            f"RQ: {jobs} jobs on the events queue for {ledger.requests} requests "
            "that stored events (one each expected)"
        )
    report["check"] = {
        "events_accepted": len(ledger.message_ids),
        "rows": len(stored),
        "lost": lost,
        "unexpected": unexpected,
        "duplicated": doubled,
        "contacts": contacts,
        "rq_jobs": jobs,
        "requests_that_stored": ledger.requests,
    }
