"""The figures beside their baseline (the same load with nothing else going on)."""

from __future__ import annotations

from typing import Any

from benchcommon.cpu import NOISY_CORES
from benchcommon.report import Row, print_rows, print_tail

from triggersbench.config import Config

# "Unaffected": within this factor of the baseline, or this many ms of it.
SLACK_FACTOR = 1.5
SLACK_MS = 20.0
# Events waiting this long for processing with nothing else going on: a backlog.
BACKLOG_MS = 1_000.0


def _ms(dist: dict[str, Any], key: str) -> str:
    return f"{dist[key]:,.1f} ms" if key in dist else "n/a"


def _unaffected(measured: dict[str, Any], baseline: dict[str, Any], key: str) -> str:
    if key not in measured or key not in baseline:
        return "n/a"
    limit = max(baseline[key] * SLACK_FACTOR, baseline[key] + SLACK_MS)
    return "PASS" if measured[key] <= limit else "MISS"


def print_table(report: dict[str, Any], cfg: Config) -> None:
    base, enum = report["baseline"], report["enumeration"]
    run = enum["enumeration"]
    check = run["check"]
    near = f"<= {SLACK_FACTOR:g}x or +{SLACK_MS:g} ms"
    rows: list[Row] = []
    for what, key in (("track HTTP", "http_ms"), ("event processed", "processing_ms")):
        for p in ("p50", "p99"):
            rows.append(
                (
                    f"{what} {p}",
                    _ms(enum[key], p),
                    near,
                    _ms(base[key], p),
                    _unaffected(enum[key], base[key], p),
                )
            )
    rows += [
        (
            f"enroll {cfg.contacts:,} contacts",
            f"{run['enrolled_s']:g} s ({run['per_s']:,}/s)",
            "",
            "",
            "",
        ),
        ("  until all at their wait", f"{run['all_waiting_s']:g} s", "", "", ""),
        ("  tick -> run started", f"{run['run_started_s']:g} s", "<= 1 tick", "", ""),
        (
            "enrolled exactly once",
            f"{check['once']:,} of {cfg.contacts:,}",
            "all",
            "",
            "PASS"
            if check["once"] == cfg.contacts and not check["more_than_once"]
            else "MISS",
        ),
    ]
    title = (
        f"Time triggers: {cfg.track_rate:g} track calls/s offered, "
        f"{enum['calls']:,} calls during the enumeration ({enum['seconds']:g} s), "
        f"{base['calls']:,} in the baseline"
    )
    print_rows(report, title, rows)
    for phase in ("baseline", "enumeration"):
        cpu = report[phase]["cpu"]
        if cpu["other"] >= NOISY_CORES:
            report["warnings"].append(
                f"{phase}: NOT QUIET, other processes used {cpu['other']:.2f} cores"
            )
        if report[phase]["fell_behind"]:
            report["warnings"].append(f"{phase}: the load fell behind its schedule")
    if base["processing_ms"].get("p50", 0) > BACKLOG_MS:
        report["warnings"].append(
            "baseline: the workers did not keep up with the load alone (events "
            "waited for processing): the comparison means little; lower "
            "--track-rate or wait for a quiet machine"
        )
    print(
        "machine speed: reference loop "
        f"{report['reference_loop_ms_start']} ms at the start, "
        f"{report['reference_loop_ms_end']} ms at the end"
    )
    print_tail(report, "5,000 contacts: the figures say little", cfg.json_out)
