"""The run: set-up, the load, the phases in order."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from benchcommon.cpu import NOISY_CORES
from benchcommon.databases import db_name, flush_redis
from benchcommon.report import log, machine_info, report_head

from segmentsbench.config import CONDITION, NOW, Config
from segmentsbench.cpu import wait_quiet
from segmentsbench.load import (
    data_stats,
    load,
    prepare_database,
    reset_measurements,
    setup_django,
)
from segmentsbench.phases import phase_count, phase_incremental, phase_refresh

# -- the run ---------------------------------------------------------------------------


def run(cfg: Config) -> dict[str, Any]:
    started = time.perf_counter()
    report = report_head(
        cfg, now=NOW.isoformat(), condition=CONDITION, machine=machine_info()
    )
    prepare(cfg, report)
    report["quiet_before"] = wait_quiet(cfg)
    log(f"(a) count: count_matching and hand-written SQL, {cfg.runs} runs each")
    report["count"] = phase_count(cfg)
    log("(b) segment_refresh_full")
    report["refresh"], segment = phase_refresh(cfg, report["count"]["count"])
    if report["data"]["pg_settings"].get("autovacuum") == "off":
        # On a default server autovacuum would now vacuum and analyze the
        # memberships (tens of thousands of rows inserted into an empty table), but
        # not events_event (far below its 20% threshold). Do what it would do.
        log("autovacuum is off on this server: VACUUM ANALYZE of the memberships")
        with psycopg.connect(cfg.database_url, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE) segments_segmentmembership")
        report["warnings"].append(
            "autovacuum is off on this server: the bench vacuums the memberships "
            "after (b) as autovacuum would"
        )
    log(f"(c) incremental: {cfg.incremental} events per pick, one call each")
    report["incremental"] = phase_incremental(cfg, segment)

    phases = {
        "count": report["count"]["cpu"],
        "refresh": report["refresh"]["cpu"],
        "incremental uniform": report["incremental"]["uniform"]["cpu"],
        "incremental active": report["incremental"]["active"]["cpu"],
    }
    for key, cpu in phases.items():
        if cpu["other"] >= NOISY_CORES:
            report["warnings"].append(
                f"{key}: other processes used {cpu['other']} cores; the figures are "
                "not comparable"
            )
    report["seconds_total"] = round(time.perf_counter() - started, 1)
    return report


def prepare(cfg: Config, report: dict[str, Any]) -> None:
    """The database (recreated and loaded, or kept with --reuse-data), migrated."""
    name = db_name(cfg.database_url)
    log(f"database {name}; Redis {cfg.redis_url}: flushing")
    reused = prepare_database(cfg)
    flush_redis(cfg)
    log("migrating (in-process)")
    setup_django(cfg)
    if reused:
        log("--reuse-data: keeping the loaded data, removing earlier measurements")
        reset_measurements(cfg)
        report["load"] = {"reused": True}
    else:
        report["load"] = load(cfg)
        ld = report["load"]
        log(
            f"loaded: contacts {ld['contacts_seconds']} s, events "
            f"{ld['events_seconds']} s ({ld['events_per_s']:,}/s, {ld['events_mb']} MB"
            f"), indexes {ld['index_seconds']} s, analyze {ld['analyze_seconds']} s"
        )
    report["data"] = data_stats()
    d = report["data"]
    log(
        f"{d['contacts']:,} contacts ({d['contacts_with_events']:,} with events), "
        f"{d['events']:,} events; events table {d['events_table']} + indexes "
        f"{d['events_indexes']}"
    )
