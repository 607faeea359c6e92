"""The run: set-up, the processes, the phases in order."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import redis
from benchcommon.cpu import NOISY_CORES, fmt_top
from benchcommon.databases import db_name, flush_redis, recreate_database
from benchcommon.paths import OUT_DIR
from benchcommon.report import log, machine_info, report_head
from benchcommon.server import free_port, wait_ready

from enginebench.config import Config
from enginebench.cpu import wait_quiet
from enginebench.floor import phase_floor
from enginebench.inprocess import phase_inprocess, phase_profile
from enginebench.latency import phase_latency, warm_up
from enginebench.procs import (
    failed_jobs,
    idle,
    queue_state,
    scheduler_proc,
    server_proc,
    wait_scheduler,
    wait_workers,
    worker_procs,
)
from enginebench.setup import Data, app_env, create_data, setup_django
from enginebench.steps import phase_engine

# -- the run ---------------------------------------------------------------------------


def run(cfg: Config) -> dict[str, Any]:
    started = time.perf_counter()
    report = report_head(cfg, machine=machine_info())
    report["problems"] = []
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    record_path = OUT_DIR / "engine-records.tsv"
    record_path.write_text("")

    log(
        f"database {db_name(cfg.database_url)}: recreating; "
        f"Redis {cfg.redis_url}: flushing"
    )
    recreate_database(cfg)
    rds = flush_redis(cfg)
    log("migrating")
    setup_django(cfg, record_path)
    probes = max(1, round(cfg.probe_rate * cfg.probe_seconds))
    data = create_data(cfg, probes=probes, warmups=10)
    log(
        f"data: {probes} probe contacts, {cfg.load_contacts:,} load contacts, "
        f"workflows and template created"
    )

    app = App(cfg, app_env(cfg, record_path))
    report["commands"] = {p.name: " ".join(p.command[1:]) for p in app.procs}
    log(
        f"starting granian ({cfg.web_workers} workers, port {app.port}), "
        f"{cfg.rq_workers} RQ SimpleWorkers, the scheduler"
    )
    try:
        app.start(rds)
        log("warming up")
        report["warm_up"] = warm_up(cfg, data, app.port, rds, record_path)
        report["quiet_before"] = {}
        if cfg.only in ("all", "latency"):
            latency(cfg, report, data, app, rds, record_path)
        if cfg.only in ("all", "engine"):
            engine(cfg, report, data, app, rds)
        if cfg.profile:
            report["profile"] = phase_profile(cfg, data)
        check_end(report, app, rds)
    finally:
        log("stopping the server, workers and scheduler")
        for p in reversed(app.procs):
            p.stop()
    finish_report(report)
    report["seconds_total"] = round(time.perf_counter() - started, 1)
    return report


class App:
    """The app's processes: granian, the RQ workers and the scheduler; and what the
    CPU accounting groups them into."""

    def __init__(self, cfg: Config, env: dict[str, str]) -> None:
        self.cfg = cfg
        self.port = cfg.port or free_port()
        self.server = server_proc(cfg, env, self.port)
        self.workers = worker_procs(cfg, env)
        self.scheduler = scheduler_proc(env)
        self.procs = [self.server, *self.workers, self.scheduler]
        self.names = [w.rq_name for w in self.workers]
        self.load_pid: list[int] = []
        self.floor_pids: list[int] = []
        workers, load_pid, floor_pids = self.workers, self.load_pid, self.floor_pids
        self.cpu_groups = {
            "granian": self.server.pids,
            "rq workers": lambda: [p for w in workers for p in w.pids()],
            "scheduler": self.scheduler.pids,
            "load gen": lambda: [p for p in load_pid if Path(f"/proc/{p}").exists()],
            "sql floor": lambda: [p for p in floor_pids if Path(f"/proc/{p}").exists()],
            "bench": lambda: [os.getpid()],
        }

    def start(self, rds: redis.Redis) -> None:
        for p in self.procs:
            p.start()
        wait_ready(self.server, self.port, self.cfg.web_workers, "sk_not-a-real-key")
        wait_workers(self.workers, rds)
        wait_scheduler(self.scheduler)


def latency(
    cfg: Config,
    report: dict[str, Any],
    data: Data,
    app: App,
    rds: redis.Redis,
    record_path: Path,
) -> None:
    """(a), then until the queues have drained."""
    quiet = report["quiet_before"]
    quiet["latency"] = wait_quiet(cfg, app.cpu_groups, "(a)")
    report["latency"] = phase_latency(
        cfg, data, app.port, rds, record_path, app.cpu_groups, app.load_pid, app.names
    )
    lat = report["latency"]
    report["problems"] += lat.pop("problems")
    log(
        f"  event -> email p50 {lat['latency_ms'].get('p50')} ms, p99 "
        f"{lat['latency_ms'].get('p99')} ms ({lat['emails']}/"
        f"{lat['probes_accepted']} emails); RQ no-op p50 "
        f"{lat['baseline_ms'].get('p50')} ms, "
        f"p99 {lat['baseline_ms'].get('p99')} ms"
    )
    if lat["load"] and lat["load"]["fell_behind"]:
        report["warnings"].append(
            "the background load fell more than 5 s behind its schedule: "
            "the server could not ingest it at that rate"
        )
    if lat["overloaded"]:
        report["warnings"].append(
            f"the queues had not drained {lat['drain_waited_s']} s after "
            f"the last probe: {lat['missing']} emails still pending, so "
            "the p99 understates the latency"
        )
    if not idle(queue_state(rds)):
        log("  waiting for the queues to drain")
        deadline = time.monotonic() + 120
        while not idle(queue_state(rds)) and time.monotonic() < deadline:
            time.sleep(0.2)


def engine(
    cfg: Config, report: dict[str, Any], data: Data, app: App, rds: redis.Redis
) -> None:
    """(b) with the RQ workers, its plain-SQL baseline, and in this process."""
    quiet = report["quiet_before"]
    report["engine"] = phase_engine(cfg, data, rds, app.cpu_groups, quiet, app.names)
    report["problems"] += report["engine"].pop("problems")
    quiet["floor"] = wait_quiet(cfg, app.cpu_groups, "(b) baseline")
    report["floor"] = phase_floor(cfg, data, app.cpu_groups, app.floor_pids)
    report["inprocess"] = phase_inprocess(cfg, data)


def check_end(report: dict[str, Any], app: App, rds: redis.Redis) -> None:
    """No failed RQ job, no process that exited early."""
    state = queue_state(rds)
    report["queues_end"] = state
    failed = sum(q["failed"] for q in state.values())
    if failed:
        report["problems"].append(
            f"RQ: {failed} jobs failed: " + " | ".join(failed_jobs(rds))
        )
    for p in app.procs:
        if not p.alive():
            report["problems"].append(f"{p.name} exited early:\n{p.tail(10)}")


def finish_report(report: dict[str, Any]) -> None:
    """The messages by status, and a warning for each phase on a busy machine."""
    from apps.campaigns.models import Message

    report["messages_by_status"] = {
        s: Message.objects.filter(status=s).count()
        for s in ("queued", "sending", "sent", "failed", "suppressed", "uncertain")
    }
    for key in ("latency", "engine", "floor"):
        cpu = report.get(key, {}).get("cpu")
        if cpu and cpu["other"] >= NOISY_CORES:
            report["warnings"].append(
                f"{key}: the machine was not quiet, other processes used "
                f"{cpu['other']:.2f} cores ({fmt_top(cpu['other_top'])})"
            )
