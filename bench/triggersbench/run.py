"""The run: set-up, the processes, the two phases, the checks."""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from benchcommon.databases import db_name, flush_redis, recreate_database
from benchcommon.paths import OUT_DIR, PYTHON, ROOT
from benchcommon.report import log, machine_info, python_reference_ms, report_head
from benchcommon.server import Proc, free_port, granian_command, wait_ready
from enginebench.cpu import CpuWatch, fmt_cpu
from enginebench.procs import wait_scheduler, wait_workers

from triggersbench.config import QUEUES, Config
from triggersbench.phases import phase_baseline, phase_enumeration
from triggersbench.setup import app_env, create_data, setup_django


def run(cfg: Config) -> dict[str, Any]:
    started = time.perf_counter()
    report = report_head(cfg, machine=machine_info())
    report["problems"] = []
    report["reference_loop_ms_start"] = round(python_reference_ms())
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    log(
        f"database {db_name(cfg.database_url)}: recreating; "
        f"Redis {cfg.redis_url}: flushing"
    )
    recreate_database(cfg)
    rds = flush_redis(cfg)
    log("migrating")
    setup_django(cfg)
    log(f"creating {cfg.contacts:,} contacts")
    data = create_data(cfg)
    app = App(cfg, app_env(cfg))
    log(
        f"starting granian ({cfg.web_workers} workers, port {app.port}), "
        f"{cfg.rq_workers} RQ SimpleWorkers, the scheduler"
    )
    try:
        app.start(rds)
        _phase(report, "baseline", app, lambda: phase_baseline(cfg, data, app.port))
        _phase(
            report, "enumeration", app, lambda: phase_enumeration(cfg, data, app.port)
        )
        _check(report, app, rds)
    finally:
        log("stopping the server, workers and scheduler")
        for p in reversed(app.procs):
            p.stop()
    report["reference_loop_ms_end"] = round(python_reference_ms())
    report["seconds_total"] = round(time.perf_counter() - started, 1)
    return report


def _phase(report: dict[str, Any], name: str, app: App, measure) -> None:
    with CpuWatch(app.cpu_groups, app.database) as cpu:
        report[name] = measure()
    report[name]["cpu"] = cpu.report
    log(f"  {name}: {fmt_cpu(cpu.report)}")


class App:
    """granian, the RQ workers and the scheduler, each in its own process group."""

    def __init__(self, cfg: Config, env: dict[str, str]) -> None:
        self.cfg = cfg
        self.database = db_name(cfg.database_url)
        self.port = free_port()
        backpressure = max(1, 1024 // cfg.web_workers)
        server = granian_command(
            self.port, cfg.web_workers, cfg.blocking_threads, backpressure
        )
        self.server = _proc("server", server, env)
        worker = [PYTHON, "manage.py", "rqworker", *QUEUES]
        worker += ["--worker-class", "rq.worker.SimpleWorker"]
        self.workers = [
            _proc(f"worker-{i}", worker, env) for i in range(cfg.rq_workers)
        ]
        self.scheduler = _proc(
            "scheduler", [PYTHON, "manage.py", "nudge_scheduler"], env
        )
        self.procs = [self.server, *self.workers, self.scheduler]
        workers = self.workers
        self.cpu_groups = {
            "granian": self.server.pids,
            "rq workers": lambda: [p for w in workers for p in w.pids()],
            "scheduler": self.scheduler.pids,
            "bench + load": lambda: _ours(),
        }

    def start(self, rds: redis.Redis) -> None:
        for p in self.procs:
            p.start()
        wait_ready(self.server, self.port, self.cfg.web_workers, "sk_not-a-real-key")
        wait_workers(self.workers, rds)
        wait_scheduler(self.scheduler)


def _proc(name: str, command: list[str], env: dict[str, str]) -> Proc:
    return Proc(name, command, env, OUT_DIR / f"triggers-{name}.log", ROOT)


def _ours() -> list[int]:
    """This process and its children (the load generator)."""
    from benchcommon.cpu import descendants

    return descendants(os.getpid())


def _check(report: dict[str, Any], app: App, rds: redis.Redis) -> None:
    """Everyone enrolled once; no HTTP error; no failed RQ job; nobody exited."""
    from rq import Queue
    from rq.registry import FailedJobRegistry

    check = report["enumeration"]["enumeration"]["check"]
    if check["more_than_once"] or check["never"]:
        report["problems"].append(f"not every contact enrolled exactly once: {check}")
    for phase in ("baseline", "enumeration"):
        if report[phase]["errors"]:
            report["problems"].append(
                f"{phase}: {report[phase]['errors']} track calls failed"
            )
    failed = sum(
        FailedJobRegistry(queue=Queue(name, connection=rds)).count for name in QUEUES
    )
    if failed:
        report["problems"].append(
            f"RQ: {failed} jobs failed (see bench/out/triggers-*.log)"
        )
    for p in app.procs:
        if not p.alive():
            report["problems"].append(f"{p.name} exited early:\n{p.tail(10)}")
