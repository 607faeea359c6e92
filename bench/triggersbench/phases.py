"""The phases: the track load (open loop, in a process of its own), the baseline,
and the same load while a schedule enrolls every contact."""

from __future__ import annotations

import multiprocessing
import random
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
from benchcommon.errors import BenchBroken
from benchcommon.report import log
from benchcommon.server import basic
from enginebench.load import Connection, dist_ms

from triggersbench.config import TRACK_EVENT, WORKFLOW, Config
from triggersbench.setup import Data, user_id

# The load stops if it falls this far behind its schedule (the server cannot keep up).
MAX_LAG_S = 5.0


# -- the load (its own process: spawn, no Django) --------------------------------------


@dataclass
class Load:
    port: int
    key: str
    prefix: str
    rate: float
    users: int
    threads: int
    seconds: float  # at most
    min_seconds: float  # at least, even when told to stop
    seed: int


def load_main(load: Load, stop: Any, results: Any) -> None:
    """Offer track calls at ``load.rate`` per second, each sent at its due time
    whatever happened to the earlier ones; latency counts from that time (no
    coordinated omission). Until ``stop`` is set (after min_seconds) or seconds."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    headers = {"Content-Type": "application/json", "Authorization": basic(load.key)}
    lock = threading.Lock()
    state = {"next": 0, "lag": 0.0}
    sent: list[tuple[float, float, int]] = []
    start_at = time.time() + 0.5
    total = int(load.rate * load.seconds)

    def claim() -> int | None:
        with lock:
            i = state["next"]
            elapsed = i / load.rate
            if i >= total or (elapsed >= load.min_seconds and stop.is_set()):
                return None
            lag = time.time() - (start_at + elapsed)
            if lag > MAX_LAG_S:
                return None
            state["lag"] = max(state["lag"], lag)
            state["next"] = i + 1
            return i

    def sender(n: int) -> None:
        rng = random.Random(load.seed + n)
        conn = Connection(load.port, headers)
        try:
            while (i := claim()) is not None:
                due = start_at + i / load.rate
                if (delay := due - time.time()) > 0:
                    time.sleep(delay)
                body = {
                    "userId": user_id(rng.randrange(load.users)),
                    "event": TRACK_EVENT,
                    "messageId": f"{load.prefix}-{i}",
                    "properties": {"n": i},
                }
                try:
                    status, _raw = conn.post("/api/v1/track", orjson.dumps(body))
                except OSError:
                    status = 0
                with lock:
                    sent.append((due, time.time() - due, status))
        finally:
            conn.close()

    pool = [threading.Thread(target=sender, args=(n,)) for n in range(load.threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    results.put({"sent": sent, "lag": state["lag"], "planned": total})


class LoadProcess:
    def __init__(self, load: Load) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.stop = ctx.Event()
        self.results = ctx.Queue()
        self.proc = ctx.Process(target=load_main, args=(load, self.stop, self.results))
        self.load = load

    def __enter__(self) -> LoadProcess:
        self.proc.start()
        return self

    def finish(self) -> dict[str, Any]:
        self.stop.set()
        out = self.results.get(timeout=self.load.seconds + 120)
        self.proc.join(30)
        return _load_report(self.load, out)

    def __exit__(self, *exc: object) -> None:
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(10)


def _load_report(load: Load, out: dict[str, Any]) -> dict[str, Any]:
    sent = out["sent"]
    ok = [latency for _due, latency, status in sent if status == 200]
    errors = len(sent) - len(ok)
    span = (max(d for d, _l, _s in sent) - min(d for d, _l, _s in sent)) if sent else 0
    return {
        "offered_per_s": load.rate,
        "calls": len(sent),
        "seconds": round(span, 1),
        "errors": errors,
        "http_ms": dist_ms(ok),
        "worst_send_lag_ms": round(out["lag"] * 1000, 1),
        "fell_behind": out["lag"] > MAX_LAG_S,
    }


# -- figures read back from the database ----------------------------------------------


# How often ProcessedWatch looks: the resolution of "received -> processed".
POLL_S = 0.01


class ProcessedWatch:
    """When each of a load's events stopped being pending (its PendingEvent row
    gone: the events job committed its work), to the nearest poll. Events have no
    processed time of their own any more: processing deletes a queue row instead
    of writing the event. Each poll reads the load's events newer than the oldest
    one still pending, so an event processed between two polls is seen once, done,
    at the second: never missed, late by at most POLL_S plus a poll's query."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.done: dict[int, float] = {}  # event id -> lag in seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> ProcessedWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        from django.db import connection

        sql = (
            "SELECT e.id, EXTRACT(EPOCH FROM e.received_at), p.event_id IS NULL "
            "FROM events_event e LEFT JOIN events_pendingevent p ON p.event_id = e.id "
            "WHERE e.id > %s AND e.message_id LIKE %s"
        )
        above = 0
        try:
            while not self._stop.is_set():
                with connection.cursor() as cursor:
                    cursor.execute(sql, [above, f"{self.prefix}-%"])
                    rows = cursor.fetchall()
                now = time.time()
                waiting = []
                for event_id, received, processed in rows:
                    if not processed:
                        waiting.append(event_id)
                    elif event_id not in self.done:
                        self.done[event_id] = now - float(received)
                if waiting:
                    above = min(waiting) - 1
                elif rows:
                    above = max(event_id for event_id, _r, _p in rows)
                time.sleep(POLL_S)
        finally:
            connection.close()


def processing_lag(watch: ProcessedWatch, deadline_s: float = 120.0) -> dict[str, Any]:
    """received -> processed of the load's events, once none is pending."""
    from django.db import connection

    sql = (
        "SELECT count(*) FROM events_pendingevent p JOIN events_event e "
        "ON e.id = p.event_id AND e.received_at = p.received_at "
        "WHERE e.message_id LIKE %s"
    )
    deadline = time.monotonic() + deadline_s
    while True:
        with connection.cursor() as cursor:
            cursor.execute(sql, [f"{watch.prefix}-%"])
            (pending,) = cursor.fetchone()
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if pending:
        raise BenchBroken(f"{pending} events of {watch.prefix} never processed")
    time.sleep(5 * POLL_S)  # the watch's last look
    return dist_ms(list(watch.done.values()))


def enrolled_once(data: Data) -> dict[str, int]:
    """Per contact: enrolled once, more than once, not at all."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE n = 1), count(*) FILTER (WHERE n > 1) "
            "FROM (SELECT contact_id, count(*) AS n FROM workflows_enrollment "
            "WHERE workflow_id = %s GROUP BY contact_id) AS per_contact",
            [data.workflow_id],
        )
        once, twice = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM contacts_contact")
        (contacts,) = cursor.fetchone()
    return {"once": once, "more_than_once": twice, "never": contacts - once - twice}


# -- the phases ------------------------------------------------------------------------


def phase_baseline(cfg: Config, data: Data, port: int) -> dict[str, Any]:
    load = _load(cfg, data, port, "base", cfg.baseline_seconds, cfg.baseline_seconds)
    log(f"baseline: {cfg.track_rate:g} track calls/s for {cfg.baseline_seconds:g} s")
    with ProcessedWatch("base") as watch, LoadProcess(load) as proc:
        time.sleep(cfg.baseline_seconds)
        report = proc.finish()
        report["processing_ms"] = processing_lag(watch)
    return report


def phase_enumeration(cfg: Config, data: Data, port: int) -> dict[str, Any]:
    """The load, while the schedule enrolls everyone."""
    load = _load(cfg, data, port, "enum", cfg.max_seconds, cfg.baseline_seconds)
    with ProcessedWatch("enum") as watch, LoadProcess(load) as proc:
        time.sleep(1.0)  # the load is running before the schedule fires
        activated = _activate_now(data)
        log(f"schedule activated; {cfg.track_rate:g} track calls/s meanwhile")
        progress = _wait_enrolled(cfg, data, activated)
        report = proc.finish()
        report["processing_ms"] = processing_lag(watch)
    report["enumeration"] = progress
    return report


def _load(cfg: Config, data: Data, port: int, prefix: str, most, least) -> Load:
    return Load(
        port=port,
        key=data.key,
        prefix=prefix,
        rate=cfg.track_rate,
        users=min(cfg.track_users, cfg.contacts),
        threads=cfg.track_threads,
        seconds=most,
        min_seconds=least,
        seed=cfg.seed,
    )


def _activate_now(data: Data) -> float:
    """Fire the schedule this minute (UTC, every contact's zone) and go live."""
    import datetime as dt

    from apps.workflows.models import Workflow
    from apps.workflows.services import workflow_activate, workflow_save_version

    now = dt.datetime.now(dt.UTC)
    cron = f"{now.minute} {now.hour} {now.day} {now.month} *"
    workflow = Workflow.objects.get(pk=data.workflow_id)
    definition = {**WORKFLOW, "trigger": {"type": "schedule", "cron": cron}}
    workflow_save_version(workflow=workflow, definition=definition)
    workflow_activate(workflow=workflow)
    return time.time()


def _wait_enrolled(cfg: Config, data: Data, activated: float) -> dict[str, Any]:
    """Until the run is done and every enrollment reached its wait."""
    from apps.workflows.models import Enrollment, TriggerRun

    deadline = activated + cfg.max_seconds
    done_at = None
    last_log = time.time()
    while time.time() < deadline:
        run = TriggerRun.objects.filter(workflow_id=data.workflow_id).first()
        if run is not None and run.status == TriggerRun.Status.DONE and not done_at:
            done_at = time.time()
        active = Enrollment.objects.filter(status=Enrollment.Status.ACTIVE).count()
        if done_at and not active:
            settled_at = time.time()
            break
        if time.time() - last_log > 10:
            enrolled = run.enrolled if run else 0
            log(f"  {enrolled:,} enrolled, {active:,} not yet at their wait")
            last_log = time.time()
        time.sleep(0.5)
    else:
        raise BenchBroken(f"the run did not finish within {cfg.max_seconds:g} s")
    run.refresh_from_db()
    return {
        "run_started_s": round(run.started_at.timestamp() - activated, 1),
        "enrolled_s": round(
            run.finished_at.timestamp() - run.started_at.timestamp(), 1
        ),
        "all_waiting_s": round(settled_at - run.started_at.timestamp(), 1),
        "enrolled": run.enrolled,
        "per_s": round(
            run.enrolled
            / max(run.finished_at.timestamp() - run.started_at.timestamp(), 0.001)
        ),
        "check": enrolled_once(data),
    }
