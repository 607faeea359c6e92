"""(a) event -> email latency: probes, the no-op job baseline, and where a probe's
time went."""

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
from enginebench.load import Sent, dist_ms, iso, load_main, open_loop
from enginebench.procs import (
    QueueSampler,
    failed_jobs,
    idle,
    queue_state,
    stats_delta,
    worker_stats,
)
from enginebench.setup import Data, probe_email, warm_email

# -- records from the email backend and the no-op jobs ---------------------------------


@dataclass
class Records:
    mails: dict[str, list[float]]  # recipient -> hand-over times
    jobs: dict[str, float]  # token -> run time


def read_records(path: Path) -> Records:
    mails: dict[str, list[float]] = {}
    jobs: dict[str, float] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Records(mails, jobs)
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 5:
            continue
        kind, key, to, at, _pid = parts
        if kind == "mail":
            for addr in to.split(","):
                mails.setdefault(addr, []).append(float(at))
        elif kind == "job":
            jobs[key] = float(at)
    return Records(mails, jobs)


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


def wait_for(
    record_path: Path,
    rds: redis.Redis,
    emails: list[str],
    tokens: list[str],
    timeout: float,
) -> tuple[Records, dict[str, Any], float]:
    """Until every email and job is recorded, or ``timeout``; returns the records,
    the queue state at the end and the seconds waited."""
    began = time.monotonic()
    while True:
        records = read_records(record_path)
        missing = sum(1 for e in emails if e not in records.mails) + sum(
            1 for t in tokens if t not in records.jobs
        )
        waited = time.monotonic() - began
        if missing == 0 or waited >= timeout:
            return records, queue_state(rds), waited
        time.sleep(0.1)


def hop_breakdown(data: Data, sent_at: dict[str, float], records: Records) -> dict:
    """Where each probe's time went, from the rows' timestamps (all clocks on this
    machine): HTTP response, received -> events job done, -> send step started,
    step, -> message claimed by the email job, -> handed to the backend."""
    from apps.campaigns.models import Message
    from apps.events.models import Event
    from apps.workflows.models import Enrollment, StepRun

    emails = list(sent_at)
    events = {
        e["pk"]: e
        for e in Event.objects.filter(
            name=PROBE_EVENT, contact__email__in=emails
        ).values("pk", "contact__email", "received_at", "processed_at")
    }
    enrollments = {
        row["pk"]: row
        for row in Enrollment.objects.filter(
            workflow_id=data.probe_workflow_id, trigger_event_id__in=list(events)
        ).values("pk", "trigger_event_id", "entered_at")
    }
    runs = {
        r["enrollment_id"]: r
        for r in StepRun.objects.filter(enrollment_id__in=list(enrollments)).values(
            "enrollment_id", "started_at", "finished_at"
        )
    }
    messages = {
        m["enrollment_id"]: m
        for m in Message.objects.filter(enrollment_id__in=list(enrollments)).values(
            "enrollment_id", "created_at", "claimed_at"
        )
    }
    hops: dict[str, list[float]] = {
        "send -> received by the app": [],
        "received -> events job done": [],
        "events job done -> send step starts": [],
        "send step (creates the message)": [],
        "step done -> email job claims it": [],
        "claimed -> handed to the backend": [],
    }
    names = list(hops)
    for enrollment_id, en in enrollments.items():
        ev = events[en["trigger_event_id"]]
        email = ev["contact__email"]
        run, msg = runs.get(enrollment_id), messages.get(enrollment_id)
        mail = records.mails.get(email)
        if not (run and msg and msg["claimed_at"] and mail and ev["processed_at"]):
            continue
        points = [
            sent_at[email],
            ev["received_at"].timestamp(),
            ev["processed_at"].timestamp(),
            run["started_at"].timestamp(),
            run["finished_at"].timestamp(),
            msg["claimed_at"].timestamp(),
            mail[0],
        ]
        for name, a, b in zip(names, points, points[1:], strict=False):
            hops[name].append(b - a)
    return {name: dist_ms(values) for name, values in hops.items()}


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
    sent, count = probing.sent, data.probes
    ok = [
        (probe_email(i), s) for i, s in enumerate(sent) if s.status == 200
    ]  # emails expected
    problems = []
    bad = [s for s in sent if s.status != 200]
    if bad:
        problems.append(
            f"probes: {len(bad)} of {len(sent)} track calls failed: "
            + "; ".join(sorted({f"HTTP {s.status} {s.error[:100]}" for s in bad})[:3])
        )
    if len(sent) < count:
        problems.append(f"probes: only {len(sent)} of {count} sent (fell behind)")

    log(f"  waiting for the last emails (up to {cfg.drain_seconds:g} s)")
    enqueued = probing.baseline.enqueued
    tokens = list(enqueued)
    records, state, waited = wait_for(
        record_path, rds, [e for e, _ in ok], tokens, cfg.drain_seconds
    )
    sent_at = {e: s.intended for e, s in ok}
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
    overloaded = bool(missing) and not idle(state)
    if twice:
        problems.append(f"{len(twice)} probes got their email more than once")
    tolerance = math.floor(len(ok) * cfg.missing_tolerance / 100)
    if missing and not overloaded and len(missing) > tolerance:
        problems.append(
            f"{len(missing)} of {len(ok)} probes got no email (queues idle after "
            f"{waited:.0f} s; tolerance {tolerance})"
        )
    if base_missing and idle(state):
        problems.append(f"baseline: {base_missing} no-op jobs never ran")
    report = {
        "probes_sent": len(sent),
        "probes_accepted": len(ok),
        "emails": len(ok) - len(missing),
        "missing": len(missing),
        "missing_examples": missing[:5],
        "sent_twice": len(twice),
        "overloaded": overloaded,
        "drain_waited_s": round(waited, 1),
        "latency_ms": dist_ms(latencies),
        "http_ms": dist_ms([s.latency for s in sent]),
        "probe_send_lag_ms": round(probing.lag * 1000, 1),
        "baseline_queue": cfg.baseline_queue,
        "baseline_ms": dist_ms(base),
        "baseline_missing": base_missing,
        "hops_ms": hop_breakdown(data, sent_at, records),
        "queues_during": probing.queues_during,
        "queues_after": state,
        "rq": probing.rq_jobs,
        "load": probing.load_report,
        "cpu": probing.cpu,
        "problems": problems,
    }
    return report


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
        params = {
            "port": port,
            "auth": auth,
            "rate": cfg.load_rate,
            "batch": cfg.load_batch,
            "seconds": lead + count / cfg.probe_rate,
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
            bthread = threading.Thread(
                target=baseline.run,
                args=("base", count, cfg.probe_rate, probes_at),
                daemon=True,
            )
            bthread.start()
            sent, lag = open_loop(
                port, headers, reqs, cfg.probe_rate, threads=16, start_at=probes_at
            )
            while bthread.is_alive():
                bthread.join(0.5)
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
