"""The figures against the targets in DESIGN.md, as a table."""

from __future__ import annotations

from typing import Any

from benchcommon.report import Row, print_rows, print_tail, status

from ingestbench.config import TARGETS, Config
from ingestbench.cpu import fmt_cpu

# -- reporting -------------------------------------------------------------------------


def verdicts(report: dict[str, Any]) -> list[Row]:
    """(figure, measured, target, baseline, PASS / MISS / n/a / "") rows."""
    cfg = report["config"]
    return (
        _batch_rows(report["batch"], report["copy"], cfg)
        + _single_rows(report["single"], report["floor_401"])
        + _open_loop_rows(report["open_loop"])
        + _retention_rows(report.get("retention"))
    )


def _batch_rows(b: dict[str, Any], c: dict[str, Any], cfg: dict[str, Any]) -> list[Row]:
    """Batch ingestion against COPY."""
    bm = b["cpu_ms_per_request"]
    per_event = 1000 / cfg["batch_size"]  # ms per request -> us per event
    return [
        (
            "batch ingestion (events/s)",
            f"{b['events_per_s']:,}",
            f">= {TARGETS['batch_events_per_s']:,}",
            f"COPY {c['rows_per_s']:,} rows/s",
            status(b["events_per_s"] >= TARGETS["batch_events_per_s"]),
        ),
        (
            "batch as % of COPY",
            f"{b['pct_of_copy']}%",
            f">= {TARGETS['batch_pct_of_copy']:g}%",
            "COPY = 100%",
            status(b["pct_of_copy"] >= TARGETS["batch_pct_of_copy"]),
        ),
        (
            "  batch latency p50 / p99",
            f"{b['latency_ms']['p50']} / {b['latency_ms']['p99']} ms",
            "-",
            f"{cfg['batch_concurrency']} in flight",
            "",
        ),
        (
            "  CPU per event: granian / postgres",
            f"{bm['server'] * per_event:.0f} / {bm['postgres'] * per_event:.0f} us",
            "-",
            f"COPY: postgres {c['cpu_ms_per_row']['postgres'] * 1000:.0f} us/row",
            "",
        ),
    ]


def _single_rows(s: dict[str, Any], f: dict[str, Any]) -> list[Row]:
    """Single track calls at saturation, against the 401 path."""
    sm, fm = s["cpu_ms_per_request"], f["cpu_ms_per_request"]
    return [
        (
            "single track at saturation (req/s)",
            f"{s['requests_per_s']:,}",
            f">= {TARGETS['single_rps']:,}",
            f"401 path {f['requests_per_s']:,} req/s",
            status(s["requests_per_s"] >= TARGETS["single_rps"]),
        ),
        (
            "  its latency p50 / p99",
            f"{s['latency_ms']['p50']} / {s['latency_ms']['p99']} ms",
            "-",
            f"401: {f['latency_ms']['p50']} / {f['latency_ms']['p99']} ms",
            "",
        ),
        (
            "  CPU per call: granian / postgres",
            f"{sm['server']:.2f} / {sm['postgres']:.2f} ms",
            "-",
            f"401: granian {fm['server']:.2f} ms",
            "",
        ),
    ]


def _open_loop_rows(o: dict[str, Any]) -> list[Row]:
    """Track latency at an offered rate; the p99 passes only at the target rate."""
    rate = o["offered_per_s"]
    at_target_rate = rate >= TARGETS["open_rate"]
    p99 = f"{o['latency_ms']['p99']} ms"
    if o["gave_up"]:
        p99 = f">= {p99} (overloaded)"
    return [
        (
            f"track p50 at {rate:g} req/s offered",
            f"{o['latency_ms']['p50']} ms",
            "-",
            f"achieved {o['achieved_per_s']} req/s",
            "",
        ),
        (
            f"track p99 at {rate:g} req/s offered",
            p99,
            f"<= {TARGETS['open_p99_ms']:g} ms at {TARGETS['open_rate']}/s",
            f"max {o['latency_ms']['max']} ms",
            status(
                o["latency_ms"]["p99"] <= TARGETS["open_p99_ms"] and not o["gave_up"],
                at_target_rate,
            ),
        ),
    ]


def _retention_rows(r: dict[str, Any] | None) -> list[Row]:
    """Batch ingestion while retention deletes old events (--retention-rows)."""
    if r is None:
        return []
    return [
        (
            "batch while retention runs (events/s)",
            f"{r['batch_events_per_s_with']:,}",
            "-",
            f"{r['pct_of_without']}% of {r['batch_events_per_s_without']:,} without",
            "",
        ),
        (
            "  retention meanwhile (rows/s)",
            f"{r['retention_rows_per_s']:,}",
            "-",
            f"{r['deleted']:,} rows, {r['overlap_pct']}% of the phase",
            "",
        ),
    ]


def print_table(report: dict[str, Any], cfg: Config) -> None:
    title = f"Ingestion benchmark, {report['mode']} mode: {report['server_command']}"
    print_rows(report, title, verdicts(report))
    ck = report["check"]
    jobs = "not checked" if ck["rq_jobs"] is None else f"{ck['rq_jobs']:,}"
    print(
        f"check: {ck['events_accepted']:,} events accepted, {ck['rows']:,} rows "
        f"stored ({ck['lost']} lost, {ck['duplicated']} twice); RQ jobs {jobs} for "
        f"{ck['requests_that_stored']:,} requests; {ck['contacts']:,} contacts"
    )
    for phase in ("batch", "single"):
        print(f"{phase} {fmt_cpu(report[phase]['cpu'])}")
    start_ms, end_ms = report["machine"]["reference_loop_ms"]
    print(
        f"machine speed: the reference loop took {start_ms:.0f} ms at the start and "
        f"{end_ms:.0f} ms at the end (lower is faster; see bench/README.md)"
    )
    print_tail(report, "short runs, the figures are indicative only", cfg.json_out)
