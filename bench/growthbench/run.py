"""The run: set-up, the base size's load and measures, the big size's, the drop."""

from __future__ import annotations

import time
from typing import Any

from benchcommon.report import log, machine_info, report_head

from growthbench.config import MONTHS, NOW, Config
from growthbench.load import load_events, setup, table_size
from growthbench.measure import (
    measure_count,
    measure_drop,
    measure_incremental,
    measure_ingest,
)


def run(cfg: Config) -> dict[str, Any]:
    started = time.perf_counter()
    report = report_head(cfg, now=NOW.isoformat(), machine=machine_info())
    log("set-up: database, contacts, partitions, segment")
    report["setup"] = setup(cfg)
    from apps.core import clock
    from apps.events.models import Source
    from apps.events.partitions import add_months, month_of
    from apps.segments.models import Segment

    source = Source.objects.get(pk=report["setup"]["source_id"])
    segment = Segment.objects.get(pk=report["setup"]["segment_id"])
    loaded = 0
    for label, size in (("base", cfg.base_events), ("big", cfg.big_events)):
        log(f"loading to {size:,} events")
        report[f"load_{label}"] = load_events(cfg, source.pk, loaded + 1, size)
        loaded = size
        with clock.frozen(NOW):
            # Unmeasured first: a freshly built index's full leaf pages split on
            # their first inserts, and each page's first change after the load's
            # checkpoint is written whole to the WAL; a table that grew by inserts
            # has paid for both long ago.
            log(f"{label} ({size:,} events): warm-up for {cfg.warmup_seconds:g} s")
            warmup = measure_ingest(cfg, source, cfg.warmup_seconds)
            log(f"{label}: ingestion for {cfg.ingest_seconds:g} s")
            figures = {"warmup": warmup, "ingest": measure_ingest(cfg, source)}
            log(f"{label}: {cfg.picks} incremental updates")
            figures["incremental"] = measure_incremental(cfg, source, segment)
            log(f"{label}: the segment count")
            figures["count"] = measure_count()
        figures["table"] = table_size()
        report[label] = figures
    oldest = add_months(month_of(NOW), -MONTHS)
    with clock.frozen(NOW):
        log("dropping the oldest month while ingesting")
        report["drop"] = measure_drop(cfg, source, add_months(oldest, 1))
    report["seconds_total"] = round(time.perf_counter() - started, 1)
    return report
