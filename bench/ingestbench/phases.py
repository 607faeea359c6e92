"""The measured phases, in the order the run takes them: batch (and the re-sent
batches), the COPY baseline, the 401 floor, track at saturation, track open loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchcommon.report import log

from ingestbench.client import Request, Result, closed_loop, latency_ms, open_loop
from ingestbench.config import Config
from ingestbench.copybaseline import copy_baseline
from ingestbench.cpu import Meter, cpu_ms_per
from ingestbench.events import EventFactory, build_batches, build_tracks
from ingestbench.ledger import Ledger
from ingestbench.retention import RetentionPass, summary


@dataclass
class Requests:
    """Every request body of the run, built before the clock starts."""

    warm_batches: list[Request]
    batches: list[Request]
    track_warm: list[Request]
    track_sat: list[Request]
    track_open: list[Request]
    floor: list[Request]  # track_sat's bodies, sent with an unknown key
    users: int  # the batch visitors' pool
    # The batch phase again, while retention deletes old events (--retention-rows).
    retention_batches: list[Request]


def build_requests(cfg: Config, report: dict[str, Any]) -> Requests:
    # About four batches per visitor: most batches meet people seen before (identity
    # lookups hit), some meet new ones (contacts and identities created).
    users = cfg.users or max(
        cfg.users_per_batch * 2, cfg.batches * cfg.users_per_batch // 4
    )
    factory = EventFactory(cfg.seed, users, run="b")
    warm = max(2, cfg.batch_concurrency)
    batches = build_batches(cfg, factory, warm + cfg.batches)
    warm_batches, batches = batches[:warm], batches[warm:]
    retention_batches = []
    if cfg.retention_rows:
        again = EventFactory(cfg.seed + 3, users, run="r")
        retention_batches = build_batches(cfg, again, cfg.batches)
    report["event_bytes_avg"] = round(
        sum(len(b.body) for b in batches) / (len(batches) * cfg.batch_size)
    )
    # Single calls: about five per visitor.
    track_factory = EventFactory(
        cfg.seed + 1, max(100, cfg.single_requests // 5), run="t"
    )
    single_warm = max(50, cfg.single_concurrency * 4)
    open_count = int(cfg.open_rate * cfg.open_seconds)
    tracks = build_tracks(track_factory, single_warm + cfg.single_requests + open_count)
    track_sat = tracks[single_warm : single_warm + cfg.single_requests]
    return Requests(
        warm_batches=warm_batches,
        batches=batches,
        track_warm=tracks[:single_warm],
        track_sat=track_sat,
        track_open=tracks[single_warm + cfg.single_requests :],
        floor=[Request("/api/v1/track", r.body) for r in track_sat],
        users=users,
        retention_batches=retention_batches,
    )


@dataclass
class Phases:
    cfg: Config
    report: dict[str, Any]
    ledger: Ledger
    meter: Meter
    port: int
    headers: dict[str, str]
    bad_headers: dict[str, str]

    def batch(self, reqs: Requests) -> None:
        """(a) batch ingestion, then the dedupe check on a few batches sent again."""
        cfg, report, ledger = self.cfg, self.report, self.ledger
        batches = reqs.batches
        log(f"batch: warm-up ({len(reqs.warm_batches)} requests)")
        res, _ = closed_loop(
            self.port, self.headers, reqs.warm_batches, cfg.batch_concurrency
        )
        ledger.record("batch warm-up", reqs.warm_batches, res)
        log(
            f"batch: {cfg.batches} x {cfg.batch_size} events "
            f"(~{report['event_bytes_avg']} B each), {cfg.batch_concurrency} in flight"
        )
        c0 = self.meter.sample()
        res, secs = closed_loop(
            self.port, self.headers, batches, cfg.batch_concurrency, cfg.max_seconds
        )
        cpu = self.meter.measure("batch", c0)
        sent = batches[: len(res)]
        ledger.record("batch", sent, res)
        accepted = sum(r.accepted for r in res)
        report["batch"] = {
            "requests": len(res),
            "events": accepted,
            "seconds": round(secs, 3),
            "events_per_s": round(accepted / secs),
            "requests_per_s": round(len(res) / secs, 1),
            "latency_ms": latency_ms(res),
            "cpu": cpu,
            "cpu_ms_per_request": cpu_ms_per(cpu, len(res) / secs),
        }
        b = report["batch"]
        log(
            f"  {b['events_per_s']:,} events/s ({b['requests_per_s']} req/s), "
            f"p50 {b['latency_ms']['p50']} ms, p99 {b['latency_ms']['p99']} ms"
            + (
                f" (stopped after {cfg.max_seconds:g} s)"
                if len(res) < cfg.batches
                else ""
            )
        )
        self._resend(sent, res)

    def batch_with_retention(self, reqs: Requests) -> None:
        """The batch phase again, while a retention pass deletes the old events."""
        cfg, report = self.cfg, self.report
        batches = reqs.retention_batches
        log(f"batch while retention deletes {cfg.retention_rows:,} old events")
        deleting = RetentionPass(cfg)
        deleting.start()
        try:
            deleting.wait_started()
            c0 = self.meter.sample()
            res, secs = closed_loop(
                self.port, self.headers, batches, cfg.batch_concurrency, cfg.max_seconds
            )
            self.meter.measure("batch with retention", c0)
            done = deleting.result()
        finally:
            deleting.stop()
        self.ledger.record("batch with retention", batches[: len(res)], res)
        accepted = sum(r.accepted for r in res)
        within = {
            "events_per_s": round(accepted / secs),
            "seconds": secs,
            "latency_ms": latency_ms(res),
        }
        report["retention"] = r = summary(cfg, report["batch"], within, done)
        log(
            f"  {r['batch_events_per_s_with']:,} events/s with retention "
            f"({r['pct_of_without']}% of {r['batch_events_per_s_without']:,}); "
            f"retention {r['retention_rows_per_s']:,} rows/s over "
            f"{r['overlap_pct']}% of the phase"
        )

    def _resend(self, sent: list[Request], res: list[Result]) -> None:
        # Dedupe: batches sent again are all duplicates and change nothing.
        again = [q for q, r in zip(sent, res, strict=True) if r.status == 200][:5]
        res, _ = closed_loop(self.port, self.headers, again, 1)
        self.ledger.record("re-sent batch", again, res, fresh=False)
        if any(
            r.duplicates != len(q.message_ids) for q, r in zip(again, res, strict=True)
        ):
            self.ledger.problems.append(
                "re-sent batch: not every event reported as a duplicate: "
                + ", ".join(f"{r.accepted}/{r.duplicates}" for r in res)
            )

    def copy(self, copy_source: int, users: int) -> None:
        """(4) the COPY baseline."""
        cfg, report = self.cfg, self.report
        log(f"COPY baseline: {cfg.copy_rows:,} rows into events_event")
        copy_factory = EventFactory(cfg.seed + 2, users, run="c")

        def measure_copy() -> Callable[[], dict[str, Any]]:
            c0 = self.meter.sample()
            return lambda: self.meter.measure("COPY", c0)

        report["copy"] = copy_baseline(
            cfg, copy_source, copy_factory, cfg.copy_rows, measure_copy
        )
        c = report["copy"]
        c["cpu_ms_per_row"] = cpu_ms_per(c["cpu"], c["rows_per_s"])
        log(
            f"  {c['rows_per_s']:,} rows/s "
            f"({c['rows_per_s_with_encoding']:,} counting the client's encoding)"
        )
        b = report["batch"]
        b["pct_of_copy"] = round(100 * b["events_per_s"] / c["rows_per_s"], 1)

    def floor(self, reqs: Requests) -> None:
        """(b) single calls: the warm-up, then the 401 floor."""
        cfg, report = self.cfg, self.report
        log("single: warm-up")
        res, _ = closed_loop(
            self.port, self.headers, reqs.track_warm, cfg.single_concurrency
        )
        self.ledger.record("track warm-up", reqs.track_warm, res)

        log(
            f"floor: /api/v1/track with an unknown key (401: no DB, no Redis), "
            f"{cfg.single_concurrency} in flight"
        )
        c0 = self.meter.sample()
        res, secs = closed_loop(
            self.port,
            self.bad_headers,
            reqs.floor,
            cfg.single_concurrency,
            cfg.max_seconds,
        )
        cpu = self.meter.measure("401 floor", c0)
        self.ledger.record("401 floor", reqs.floor[: len(res)], res, status=401)
        report["floor_401"] = {
            "requests": len(res),
            "requests_per_s": round(len(res) / secs),
            "latency_ms": latency_ms(res),
            "cpu": cpu,
            "cpu_ms_per_request": cpu_ms_per(cpu, len(res) / secs),
        }
        f = report["floor_401"]
        log(
            f"  {f['requests_per_s']:,} req/s, p50 {f['latency_ms']['p50']} ms, "
            f"p99 {f['latency_ms']['p99']} ms"
        )

    def track(self, reqs: Requests) -> None:
        """Track calls at saturation, closed loop."""
        cfg, report = self.cfg, self.report
        track_sat = reqs.track_sat
        log(
            f"track: up to {len(track_sat):,} calls, {cfg.single_concurrency} in flight"
        )
        c0 = self.meter.sample()
        res, secs = closed_loop(
            self.port, self.headers, track_sat, cfg.single_concurrency, cfg.max_seconds
        )
        cpu = self.meter.measure("track", c0)
        self.ledger.record("track", track_sat[: len(res)], res)
        f = report["floor_401"]
        report["single"] = {
            "requests": len(res),
            "seconds": round(secs, 3),
            "requests_per_s": round(len(res) / secs),
            "latency_ms": latency_ms(res),
            "pct_of_floor": round(100 * len(res) / secs / f["requests_per_s"], 1),
            "cpu": cpu,
            "cpu_ms_per_request": cpu_ms_per(cpu, len(res) / secs),
        }
        s = report["single"]
        log(
            f"  {s['requests_per_s']:,} req/s, p50 {s['latency_ms']['p50']} ms, "
            f"p99 {s['latency_ms']['p99']} ms"
        )

    def open_loop(self, reqs: Requests) -> None:
        """Track calls open loop, at a fixed offered rate."""
        cfg, report = self.cfg, self.report
        track_open = reqs.track_open
        log(
            f"open loop: {cfg.open_rate:g} req/s offered for {cfg.open_seconds:g} s "
            f"({len(track_open)} calls, {cfg.open_threads} sender threads)"
        )
        c0 = self.meter.sample()
        ol = open_loop(
            self.port, self.headers, track_open, cfg.open_rate, cfg.open_threads
        )
        cpu = self.meter.measure("open loop", c0)
        self.ledger.record("open loop", track_open[: len(ol.results)], ol.results)
        report["open_loop"] = {
            "offered_per_s": cfg.open_rate,
            "requests": len(ol.results),
            "achieved_per_s": round(len(ol.results) / ol.seconds, 1),
            "latency_ms": latency_ms(ol.results),
            "gave_up": ol.gave_up,
            "worst_send_lag_ms": round(ol.worst_lag * 1000, 2),
            "cpu": cpu,
        }
        o = report["open_loop"]
        log(
            f"  achieved {o['achieved_per_s']} req/s, p50 {o['latency_ms']['p50']} ms, "
            f"p99 {o['latency_ms']['p99']} ms, max {o['latency_ms']['max']} ms"
        )
        if ol.gave_up:
            report["warnings"].append(
                f"open loop: the server fell over 5 s behind {cfg.open_rate:g} req/s "
                f"after {len(ol.results)} calls; the run stopped there, so its p99 "
                "understates the latency a longer run would see"
            )
