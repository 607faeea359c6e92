"""The figures table: the big size beside the base size, with the targets."""

from __future__ import annotations

from typing import Any

from benchcommon.report import print_rows, print_tail, status

from growthbench.config import (
    DROP_TARGET_S,
    STALL_FACTOR,
    STALL_FLOOR_S,
    WITHIN,
    Config,
)


def print_table(report: dict[str, Any], cfg: Config) -> None:
    base, big, drop = report["base"], report["big"], report["drop"]
    ingest = big["ingest"]["events_per_s"] / max(base["ingest"]["events_per_s"], 1)
    update = big["incremental"]["p99_ms"] / max(base["incremental"]["p99_ms"], 1e-9)
    stall_limit = max(STALL_FACTOR * drop["p99_before_ms"], 1000 * STALL_FLOOR_S)
    sizes = (f"{cfg.big_events:,}", f"{cfg.base_events:,}")
    rows = [
        (
            "batch ingestion",
            f"{big['ingest']['events_per_s']:,} events/s ({ingest:.2f}x)",
            f">= {1 - WITHIN:.2f}x",
            f"{base['ingest']['events_per_s']:,} events/s",
            status(ingest >= 1 - WITHIN),
        ),
        (
            "one contact's update p99",
            f"{big['incremental']['p99_ms']} ms ({update:.2f}x)",
            f"<= {1 + WITHIN:.2f}x",
            f"{base['incremental']['p99_ms']} ms",
            status(update <= 1 + WITHIN),
        ),
        (
            "  p50",
            f"{big['incremental']['p50_ms']} ms",
            "",
            f"{base['incremental']['p50_ms']} ms",
            "",
        ),
        (
            "behavioural segment count",
            f"{big['count']['best_s']} s ({big['count']['count']:,})",
            "",
            f"{base['count']['best_s']} s ({base['count']['count']:,})",
            "",
        ),
        (
            "drop a month while ingesting",
            f"{drop['drop_s']} s ({', '.join(drop['dropped'])})",
            f"< {DROP_TARGET_S:g} s",
            "",
            status(drop["drop_s"] < DROP_TARGET_S),
        ),
        (
            "  slowest call during it",
            f"{drop['slowest_during_ms']} ms ({drop['calls_during']} calls)",
            f"<= {stall_limit:.0f} ms",
            f"p99 before {drop['p99_before_ms']} ms",
            status(drop["slowest_during_ms"] <= stall_limit),
        ),
        (
            "table",
            f"{big['table']['size']}, {big['table']['partitions']} partitions",
            "",
            f"{base['table']['size']}",
            "",
        ),
    ]
    print_rows(
        report,
        f"Growth: the events table at {sizes[0]} rows beside {sizes[1]} (same run)",
        rows,
    )
    print_tail(report, "the sizes are small: the figures say little", cfg.json_out)
