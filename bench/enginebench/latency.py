"""(a) event -> email latency: probes and the no-op job baseline (where a probe's
time went: hops.py)."""

from __future__ import annotations

import math
import multiprocessing
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis
from benchcommon.databases import db_name
from benchcommon.errors import BenchBroken, SetupFailed
from benchcommon.report import log
from benchcommon.server import basic

from enginebench.config import NOOP_JOB, PROBE_EVENT, Config
from enginebench.cpu import CpuWatch, fmt_cpu
from enginebench.hops import hop_breakdown
from enginebench.load import Sent, dist_ms, iso, load_main, open_loop
from enginebench.procs import (
    QueueSampler,
    failed_jobs,
    idle,
    stats_delta,
    worker_stats,
)
from enginebench.records import Records, wait_for
from enginebench.setup import Data, probe_email, warm_email

# -- (a) event -> email latency --------------------------------------------------------


def probe_requests(
    indexes: list[int], start_at: float, rate: float, email_of: Any, run: str
) -> list[tuple[str, bytes]]:
    out = []
    for n, i in enumerate(indexes):
        at = start_at + n / rate
        external = email_of(i).split("@")[0]
        body = {
            "type": "track",
            "event": PROBE_EVENT,
            "messageId": f"{run}-{i}",
            "userId": external,
            "anonymousId": f"anon-{external}",
            "timestamp": iso(at),
            "sentAt": iso(at),
            "properties": {"plan": "pro", "source": "bench"},
            "context": {"ip": "198.51.100.7", "locale": "en-US"},
        }
        out.append(("/api/v1/track", orjson.dumps(body)))
    return out


class Baseline:
    """No-op RQ jobs enqueued from this process at ``rate``, offset half a period
    from the probes; enqueue time recorded just before the enqueue call."""

    def __init__(self, rds: redis.Redis, queue: str) -> None:
        from rq import Queue

        self.queue = Queue(queue, connection=rds)
        self.enqueued: dict[str, float] = {}

    def run(self, prefix: str, count: int, rate: float, start_at: float) -> None:
        for i in range(count):
            due = start_at + (i + 0.5) / rate
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            token = f"{prefix}-{i}"
            self.enqueued[token] = time.time()
            self.queue.enqueue(NOOP_JOB, token, result_ttl=0, failure_ttl=3600)


@dataclass
class Probing:
    """What the probes' phase sent and saw, before the emails are waited for."""

    sent: list[Sent]
    lag: float
    baseline: Baseline
    load_report: dict[str, Any] | None
    rq_jobs: dict[str, Any]
    queues_during: dict[str, dict[str, float]]
    cpu: dict[str, Any]


@dataclass
class Delivery:
    """What the probes' emails and the baseline's jobs did, once waited for."""

    records: Records
    state: dict[str, Any]  # the queues at the end of the wait
    waited: float
    latencies: list[float]  # seconds, intended send -> first email
    missing: list[str]  # emails never handed to the backend
    twice: list[str]  # emails handed over more than once
    base: list[float]  # seconds, no-op job enqueued -> run
    base_missing: int


def phase_latency(
    cfg: Config,
    data: Data,
    port: int,
    rds: redis.Redis,
    record_path: Path,
    cpu_groups: dict[str, Any],
    load_pid: list[int],
    names: list[str],
) -> dict[str, Any]:
    probing = _probe(cfg, data, port, rds, cpu_groups, load_pid, names)
    sent = probing.sent
    ok = [
        (probe_email(i), s) for i, s in enumerate(sent) if s.status == 200
    ]  # emails expected
    problems = _sending_problems(sent, data.probes)
    got = _wait_for_delivery(cfg, rds, record_path, probing.baseline, ok)
    overloaded = bool(got.missing) and not idle(got.state)
    problems += _delivery_problems(cfg, len(ok), got, overloaded)
    sent_at = {e: s.intended for e, s in ok}
    report = {
        "probes_sent": len(sent),
        "probes_accepted": len(ok),
        "emails": len(ok) - len(got.missing),
        "missing": len(got.missing),
        "missing_examples": got.missing[:5],
        "sent_twice": len(got.twice),
        "overloaded": overloaded,
        "drain_waited_s": round(got.waited, 1),
        "latency_ms": dist_ms(got.latencies),
        "http_ms": dist_ms([s.latency for s in sent]),
        "probe_send_lag_ms": round(probing.lag * 1000, 1),
        "baseline_queue": cfg.baseline_queue,
        "baseline_ms": dist_ms(got.base),
        "baseline_missing": got.base_missing,
        "hops_ms": hop_breakdown(data, sent_at, got.records),
        "queues_during": probing.queues_during,
        "queues_after": got.state,
        "rq": probing.rq_jobs,
        "load": probing.load_report,
        "cpu": probing.cpu,
        "problems": problems,
    }
    return report


def _sending_problems(sent: list[Sent], count: int) -> list[str]:
    """Failed track calls, and probes never sent."""
    problems = []
    bad = [s for s in sent if s.status != 200]
    if bad:
        problems.append(
            f"probes: {len(bad)} of {len(sent)} track calls failed: "
            + "; ".join(sorted({f"HTTP {s.status} {s.error[:100]}" for s in bad})[:3])
        )
    if len(sent) < count:
        problems.append(f"probes: only {len(sent)} of {count} sent (fell behind)")
    return problems


def _wait_for_delivery(
    cfg: Config,
    rds: redis.Redis,
    record_path: Path,
    baseline: Baseline,
    ok: list[tuple[str, Sent]],
) -> Delivery:
    """Wait for the accepted probes' emails and the no-op jobs, then time them."""
    log(f"  waiting for the last emails (up to {cfg.drain_seconds:g} s)")
    enqueued = baseline.enqueued
    tokens = list(enqueued)
    records, state, waited = wait_for(
        record_path, rds, [e for e, _ in ok], tokens, cfg.drain_seconds
    )
    latencies, missing, twice = [], [], []
    for email, s in ok:
        times = records.mails.get(email)
        if not times:
            missing.append(email)
            continue
        if len(times) > 1:
            twice.append(email)
        latencies.append(min(times) - s.intended)
    base = [records.jobs[t] - at for t, at in enqueued.items() if t in records.jobs]
    base_missing = len(tokens) - len(base)
    return Delivery(
        records, state, waited, latencies, missing, twice, base, base_missing
    )


def _delivery_problems(
    cfg: Config, accepted: int, got: Delivery, overloaded: bool
) -> list[str]:
    """Emails sent twice; missing emails beyond the tolerance, unless the queues
    were still busy (overloaded, not broken); no-op jobs that never ran."""
    problems = []
    if got.twice:
        problems.append(f"{len(got.twice)} probes got their email more than once")
    tolerance = math.floor(accepted * cfg.missing_tolerance / 100)
    if got.missing and not overloaded and len(got.missing) > tolerance:
        problems.append(
            f"{len(got.missing)} of {accepted} probes got no email (queues idle "
            f"after {got.waited:.0f} s; tolerance {tolerance})"
        )
    if got.base_missing and idle(got.state):
        problems.append(f"baseline: {got.base_missing} no-op jobs never ran")
    return problems


def _probe(
    cfg: Config,
    data: Data,
    port: int,
    rds: redis.Redis,
    cpu_groups: dict[str, Any],
    load_pid: list[int],
    names: list[str],
) -> Probing:
    """The background load (its own process), the probes and the baseline's no-op
    jobs, all open loop."""
    auth = basic(data.key)
    headers = {"Content-Type": "application/json", "Authorization": auth}
    count = data.probes
    lead = cfg.lead_seconds if cfg.load_rate > 0 else 0.0
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    start_at = time.time() + 3.0  # time for the load process to build its requests
    load = None
    if cfg.load_rate > 0:
        seconds = lead + count / cfg.probe_rate
        load = _start_load(cfg, ctx, results, port, auth, seconds, start_at, load_pid)
    probes_at = start_at + lead
    reqs = probe_requests(
        list(range(count)), probes_at, cfg.probe_rate, probe_email, "probe"
    )
    baseline = Baseline(rds, cfg.baseline_queue)
    log(
        f"(a) {count} probes at {cfg.probe_rate:g}/s for {count / cfg.probe_rate:g} s, "
        f"background {cfg.load_rate:g} events/s ({cfg.load_batch} per request) "
        f"starting {lead:g} s before; baseline no-op jobs on '{cfg.baseline_queue}'"
    )
    stats0 = worker_stats(rds, names)
    wall0 = time.time()
    try:
        with (
            QueueSampler(rds) as sampler,
            CpuWatch(cpu_groups, db_name(cfg.database_url)) as cpu,
        ):
            sent, lag = _send_probes(cfg, port, headers, reqs, baseline, probes_at)
            load_report = results.get(timeout=120) if load is not None else None
        if load is not None:
            load.join(10)
    finally:
        if load is not None and load.is_alive():
            load.terminate()
            load.join(5)
    rq_jobs = stats_delta(stats0, worker_stats(rds, names), time.time() - wall0)
    log("  " + fmt_cpu(cpu.report))
    return Probing(
        sent, lag, baseline, load_report, rq_jobs, sampler.summary(), cpu.report
    )


def _start_load(
    cfg: Config,
    ctx: Any,
    results: Any,
    port: int,
    auth: str,
    seconds: float,
    start_at: float,
    load_pid: list[int],
) -> Any:
    """The background load's process, once it says it is ready: it sends from
    ``start_at`` for ``seconds`` and puts its report on ``results``. Its pid goes
    to ``load_pid`` as soon as it starts."""
    params = {
        "port": port,
        "auth": auth,
        "rate": cfg.load_rate,
        "batch": cfg.load_batch,
        "seconds": seconds,
        "contacts": cfg.load_contacts,
        "seed": cfg.seed,
        "run": f"load-{uuid.uuid4().hex[:6]}",
        "threads": cfg.load_threads,
        "start_at": start_at,
    }
    load = ctx.Process(target=load_main, args=(params, results), daemon=True)
    load.start()
    load_pid.append(load.pid)
    first = results.get(timeout=60)
    if not first.get("ready"):
        raise BenchBroken(f"the load generator did not start: {first}")
    return load


def _send_probes(
    cfg: Config,
    port: int,
    headers: dict[str, str],
    reqs: list[tuple[str, bytes]],
    baseline: Baseline,
    probes_at: float,
) -> tuple[list[Sent], float]:
    """The probes, open loop, with the baseline's no-op jobs from a thread beside
    them; returns what was sent and the sender's lag."""
    bthread = threading.Thread(
        target=baseline.run,
        args=("base", len(reqs), cfg.probe_rate, probes_at),
        daemon=True,
    )
    bthread.start()
    sent, lag = open_loop(
        port, headers, reqs, cfg.probe_rate, threads=16, start_at=probes_at
    )
    while bthread.is_alive():
        bthread.join(0.5)
    return sent, lag


def warm_up(
    cfg: Config, data: Data, port: int, rds: redis.Redis, record_path: Path
) -> dict[str, Any]:
    """A few probes and no-op jobs through every process, so that imports, template
    compilation and connections are warm before anything is timed."""
    headers = {"Content-Type": "application/json", "Authorization": basic(data.key)}
    start_at = time.time() + 0.2
    reqs = probe_requests(list(range(data.warmups)), start_at, 20.0, warm_email, "warm")
    baseline = Baseline(rds, cfg.baseline_queue)
    baseline.run("warm", 10, 50.0, start_at)
    sent, _ = open_loop(port, headers, reqs, 20.0, threads=4, start_at=start_at)
    bad = [s for s in sent if s.status != 200]
    if bad:
        raise SetupFailed(
            f"warm-up: {len(bad)} track calls failed: HTTP {bad[0].status} "
            f"{bad[0].error}"
        )
    records, state, waited = wait_for(
        record_path,
        rds,
        [warm_email(i) for i in range(data.warmups)],
        list(baseline.enqueued),
        timeout=45.0,
    )
    got = sum(1 for i in range(data.warmups) if warm_email(i) in records.mails)
    if got < data.warmups or len(records.jobs) < len(baseline.enqueued):
        detail = failed_jobs(rds)
        raise BenchBroken(
            f"warm-up: {got} of {data.warmups} emails and {len(records.jobs)} of "
            f"{len(baseline.enqueued)} no-op jobs after {waited:.0f} s; queues "
            f"{state}; failed jobs: {detail or 'none'}"
        )
    return {"emails": got, "seconds": round(waited, 1)}
