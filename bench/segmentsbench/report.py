"""The figures against the targets in DESIGN.md, and the plans."""

from __future__ import annotations

from typing import Any

from benchcommon.report import Row, print_rows, print_tail, status

from segmentsbench.config import NOW, TARGET_CONTACTS, TARGET_EVENTS, TARGETS, Config
from segmentsbench.cpu import fmt_cpu

# -- reporting -------------------------------------------------------------------------


def verdicts(report: dict[str, Any]) -> list[Row]:
    a, b, c = report["count"], report["refresh"], report["incremental"]
    at_size = (
        report["config"]["contacts"] >= TARGET_CONTACTS
        and report["config"]["events"] >= TARGET_EVENTS
    )

    hand, cm = a["hand_sql"], a["count_matching"]
    rows = [
        (
            "(a) count_matching best / median",
            f"{cm['best_s']:.3f} / {cm['median_s']:.3f} s",
            f"<= {TARGETS['count_s']:g} s at 1M/10M",
            f"SQL {hand['best_s']:.3f} / {hand['median_s']:.3f} s",
            status(cm["median_s"] <= TARGETS["count_s"], at_size),
        ),
        ("    members", f"{a['count']:,}", "-", "same count", ""),
        (
            "(b) refresh_full, new segment",
            f"{b['first_s']:.3f} s",
            "-",
            f"{b['entered']:,} entered",
            "",
        ),
        (
            "    refresh_full, no change (median)",
            f"{b['unchanged']['median_s']:.3f} s",
            "-",
            f"count {a['count_matching']['median_s']:.3f} s",
            "",
        ),
    ]
    for label in ("uniform", "active"):
        r = c[label]
        rows.append(
            (
                f"(c) incremental p50 / p99, {label}",
                f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f} ms",
                f"<= {TARGETS['incremental_ms']:g} ms",
                f"{r['changed']} changed: p50 {r['changed_p50_ms']} ms",
                status(r["p99_ms"] <= TARGETS["incremental_ms"]),
            )
        )
    return rows


def print_table(report: dict[str, Any], cfg: Config) -> None:
    d = report["data"]
    title = (
        f"Segment benchmark, {report['mode']} mode: {d['contacts']:,} contacts, "
        f"{d['events']:,} events, now = {NOW.isoformat()}"
    )
    print_rows(report, title, verdicts(report))
    print(
        "(a) target on the median; (c) target on the p99 of one call per event "
        f"({report['incremental']['uniform']['calls']} per pick)"
    )
    for phase in ("count", "refresh"):
        print(f"{phase} {fmt_cpu(report[phase]['cpu'])}")
    for label in ("uniform", "active"):
        r = report["incremental"][label]
        per_call = r["cpu"]["cpu_s"] / r["calls"] * 1000
        print(
            f"incremental {label} {fmt_cpu(r['cpu'])}\n  CPU per event (bench + "
            f"PostgreSQL, with the event's insert): {per_call:.2f} ms"
        )
    print_tail(
        report,
        "far below the target size, the figures are indicative only",
        cfg.json_out,
    )


def print_plans(report: dict[str, Any], cfg: Config) -> None:
    a = report["count"]
    print()
    print(f"EXPLAIN (ANALYZE, BUFFERS) of count_matching (first {cfg.explain_lines}):")
    for row in a["plan"][: cfg.explain_lines]:
        print(f"  {row}")
    if len(a["plan"]) > cfg.explain_lines:
        print(f"  ... {len(a['plan']) - cfg.explain_lines} more lines in the JSON")
    tail = [r for r in a["plan"] if r.startswith(("Planning Time", "Execution Time"))]
    jit = [r.strip() for r in a["plan"] if r.strip().startswith("Timing:")]
    print("  " + "; ".join(tail + jit))
    print()
    print("EXPLAIN (ANALYZE, BUFFERS) of the hand-written SQL (top):")
    for row in a["hand_plan"][: max(10, cfg.explain_lines // 2)]:
        print(f"  {row}")
    tail = [
        r for r in a["hand_plan"] if r.startswith(("Planning Time", "Execution Time"))
    ]
    print("  " + "; ".join(tail))
