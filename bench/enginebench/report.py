"""The figures against the targets in DESIGN.md, as a table."""

from __future__ import annotations

from typing import Any

from benchcommon.report import Row, print_rows, print_tail, status

from enginebench.config import STEPS_PER_ENROLLMENT, TARGETS, Config
from enginebench.cpu import fmt_cpu

# -- reporting -------------------------------------------------------------------------


def verdicts(report: dict[str, Any]) -> list[Row]:
    """(figure, measured, target, baseline, PASS / MISS / n/a / "") rows."""
    cfg = report["config"]
    two = cfg["rq_workers"] == TARGETS["workers"]
    rows = []
    if "latency" in report:
        rows += _latency_rows(report["latency"], cfg, two)
    if "engine" in report:
        rows += _engine_rows(report, cfg, two)
    return rows


def _latency_rows(lat: dict[str, Any], cfg: dict[str, Any], two: bool) -> list[Row]:
    """(a): p50 and p99 against the no-op jobs; they pass only at the target load."""
    load = lat["load"] or {}
    at_rate = (
        cfg["load_rate"] >= TARGETS["load_events_per_s"]
        and not load.get("fell_behind")
        and two
    )
    ms, base = lat["latency_ms"], lat["baseline_ms"]
    over = " (overloaded)" if lat["overloaded"] else ""
    p50, p99 = ms.get("p50", float("nan")), ms.get("p99", float("nan"))
    rate = f"{cfg['load_rate']:g} ev/s"
    return [
        (
            f"event -> email p50, {rate}",
            f"{p50} ms{over}",
            f"<= {TARGETS['p50_ms']:g} ms",
            f"RQ no-op {base.get('p50')} ms",
            status(p50 <= TARGETS["p50_ms"] and not lat["overloaded"], at_rate),
        ),
        (
            f"event -> email p99, {rate}",
            f"{p99} ms{over}",
            f"<= {TARGETS['p99_ms']:g} ms",
            f"RQ no-op {base.get('p99')} ms",
            status(p99 <= TARGETS["p99_ms"] and not lat["overloaded"], at_rate),
        ),
        (
            "  probes that got their email",
            f"{lat['emails']} / {lat['probes_accepted']}",
            "all",
            f"no-op jobs {base.get('n', 0)} / {lat['probes_sent']}",
            "",
        ),
        (
            "  background ingested (events/s)",
            f"{load.get('achieved_events_per_s', 0)}",
            f"{TARGETS['load_events_per_s']}",
            f"offered {cfg['load_rate']:g}, {cfg['load_batch']}/request",
            "",
        ),
    ]


def _engine_rows(report: dict[str, Any], cfg: dict[str, Any], two: bool) -> list[Row]:
    """(b): steps/s against plain SQL, with what one process and its CPU show."""
    eng, floor, inproc = report["engine"], report["floor"], report["inprocess"]
    return [
        (
            f"engine steps/s, {cfg['rq_workers']} workers",
            f"{eng['steps_per_s']:,}",
            f">= {TARGETS['steps_per_s']:,}",
            f"plain SQL {floor['steps_per_s']:,}",
            status((eng["steps_per_s"] or 0) >= TARGETS["steps_per_s"], two),
        ),
        (
            "  enrollments/s",
            f"{eng['enrollments_per_s']:,}",
            "-",
            f"{eng['enrollments']:,} x {STEPS_PER_ENROLLMENT} steps",
            "",
        ),
        (
            "  one process, no RQ (steps/s)",
            f"{inproc['steps_per_s']:,}",
            "-",
            f"{inproc['queries_per_enrollment']} queries/enrollment",
            "",
        ),
        (
            "  CPU per enrollment: Python + PG",
            f"{inproc['python_cpu_ms_per_enrollment']} + "
            f"{inproc['postgres_cpu_ms_per_enrollment']} ms",
            "-",
            f"=> <= {inproc['steps_per_s_two_cores_cpu_bound']:,} steps/s on 2 cores",
            "",
        ),
    ]


def print_table(report: dict[str, Any], cfg: Config) -> None:
    title = (
        f"Engine benchmark, {report['mode']} mode: {cfg.rq_workers} RQ SimpleWorkers, "
        f"granian {cfg.web_workers} workers"
    )
    print_rows(report, title, verdicts(report))
    if "latency" in report:
        lat = report["latency"]
        print("where a probe's time goes (p50 / p99 ms):")
        for name, d in lat["hops_ms"].items():
            if d.get("n"):
                print(f"  {name:<40} {d['p50']:>8} / {d['p99']}")
        q = lat["queues_during"]
        print(
            "queue length during (a), mean / max: "
            + ", ".join(f"{k} {v['mean']} / {v['max']}" for k, v in q.items())
        )
        rq = lat["rq"]
        print(
            f"(a) RQ: {rq['jobs']:,} jobs; workers busy "
            + " / ".join(f"{x}%" for x in rq["busy_pct_each"])
        )
        print(f"(a) {fmt_cpu(lat['cpu'])}")
    if "engine" in report:
        eng = report["engine"]
        rq = eng["rq"]
        print(
            f"(b) RQ: {rq['jobs']:,} jobs ({eng['jobs_expected']} enqueued by the "
            "benchmark); workers busy "
            + " / ".join(f"{x}%" for x in rq["busy_pct_each"])
        )
        print(f"(b) {fmt_cpu(eng['cpu'])}")
        floor = report["floor"]
        print(
            "(b) CPU per enrollment: RQ workers "
            f"{eng['worker_cpu_ms_per_enrollment']} ms + PostgreSQL "
            f"{eng['postgres_cpu_ms_per_enrollment']} ms; plain SQL "
            f"{floor['client_cpu_ms_per_enrollment']} + "
            f"{floor['postgres_cpu_ms_per_enrollment']} ms"
        )
    print_tail(
        report,
        "short runs at a lower load, the figures are indicative only",
        cfg.json_out,
    )
