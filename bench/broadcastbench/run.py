"""The run: set-up, the bare loop, the processes, the send, the checks."""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from benchcommon.cpu import descendants
from benchcommon.databases import db_name, flush_redis, recreate_database
from benchcommon.paths import OUT_DIR, PYTHON, ROOT
from benchcommon.report import log, machine_info, python_reference_ms, report_head
from benchcommon.server import Proc
from enginebench.cpu import CpuWatch, fmt_cpu
from enginebench.procs import wait_scheduler, wait_workers

from broadcastbench.baseline import run_baseline
from broadcastbench.config import QUEUES, Config
from broadcastbench.send import phase_send, wait_finished
from broadcastbench.setup import (
    BASELINE_RECORDS,
    RECORDS,
    app_env,
    create_data,
    reset_records,
    setup_django,
)


def run(cfg: Config) -> dict[str, Any]:
    started = time.perf_counter()
    report = report_head(cfg, machine=machine_info())
    report["problems"] = []
    report["reference_loop_ms_start"] = round(python_reference_ms())
    log(
        f"database {db_name(cfg.database_url)}: recreating; "
        f"Redis {cfg.redis_url}: flushing"
    )
    recreate_database(cfg)
    rds = flush_redis(cfg)
    reset_records(RECORDS, BASELINE_RECORDS)
    log("migrating")
    setup_django(cfg)
    log(f"creating {cfg.recipients:,} contacts in a static segment, the campaign")
    data = create_data(cfg)
    env = app_env(cfg)
    before = _bare_loop(cfg, env, "before the send")
    app = App(env, cfg.rq_workers)
    log(f"starting {cfg.rq_workers} RQ SimpleWorkers and the scheduler")
    try:
        app.start(rds)
        with CpuWatch(app.cpu_groups, db_name(cfg.database_url)) as cpu:
            report["send"] = phase_send(cfg, data, app.worker_pids)
        report["send"]["cpu"] = cpu.report
        # The workers' CPU (dispatch included), a message: unlike the rate, it
        # hardly depends on what else the machine runs.
        report["send"]["cpu_ms_per_message"] = round(
            1000
            * cpu.report["rq workers"]
            * cpu.report["wall_s"]
            / max(report["send"]["messages"], 1),
            3,
        )
        report["send"]["postgres_cpu_ms_per_message"] = round(
            1000
            * cpu.report["postgres"]
            * cpu.report["wall_s"]
            / max(report["send"]["messages"], 1),
            3,
        )
        log(f"  send: {fmt_cpu(cpu.report)}")
        report["send"]["finished"] = wait_finished(data)
        _check(report, cfg, app, rds)
    finally:
        log("stopping the workers and the scheduler")
        for p in reversed(app.procs):
            p.stop()
    # The machine's speed drifts by 10-20% over minutes here (the reference loop
    # says so): the bare loop runs before and after the send, and the two
    # together are the baseline.
    after = _bare_loop(cfg, env, "after the send")
    report["baseline"] = _both(before, after)
    report["reference_loop_ms_end"] = round(python_reference_ms())
    report["seconds_total"] = round(time.perf_counter() - started, 1)
    return report


def _bare_loop(cfg: Config, env: dict[str, str], when: str) -> dict[str, Any]:
    ours = {"bench + bare loop": lambda: descendants(os.getpid())}
    log(
        f"bare loop {when}: {cfg.baseline_messages:,} messages in "
        f"{cfg.rq_workers} processes"
    )
    cpu = CpuWatch(ours, db_name(cfg.database_url))
    result = run_baseline(env, _id_ranges(cfg), cfg.max_seconds, cpu)
    result["cpu"] = cpu.report
    log(f"  {result['per_s']:,} msg/s; {fmt_cpu(cpu.report)}")
    return result


def _both(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The two bare-loop runs as one: their messages over their seconds."""
    made = before["messages"] + after["messages"]
    seconds = before["seconds"] + after["seconds"]
    cpu_ms = (
        before["cpu_ms_per_message"] * before["messages"]
        + after["cpu_ms_per_message"] * after["messages"]
    ) / max(made, 1)
    return {
        "processes": before["processes"],
        "messages": made,
        "seconds": round(seconds, 2),
        "per_s": round(made / max(seconds, 1e-9)),
        "cpu_ms_per_message": round(cpu_ms, 3),
        "before": before,
        "after": after,
        # the quieter of the two, for the report's "not quiet" warning
        "cpu": min(before["cpu"], after["cpu"], key=lambda c: c["other"]),
    }


def _id_ranges(cfg: Config) -> list[tuple[int, int]]:
    """The bare loop's contacts (the first baseline_messages), one range a
    process."""
    from apps.contacts.models import Contact

    first = Contact.objects.order_by("pk").values_list("pk", flat=True).first()
    share = -(-cfg.baseline_messages // cfg.rq_workers)
    last = first + cfg.baseline_messages - 1
    return [
        (start, min(start + share - 1, last)) for start in range(first, last + 1, share)
    ]


class App:
    """The RQ workers and the scheduler, each in its own process group."""

    def __init__(self, env: dict[str, str], workers: int) -> None:
        command = [PYTHON, "manage.py", "rqworker", *QUEUES]
        command += ["--worker-class", "rq.worker.SimpleWorker"]
        self.workers = [_proc(f"worker-{i}", command, env) for i in range(workers)]
        self.scheduler = _proc(
            "scheduler", [PYTHON, "manage.py", "nudge_scheduler"], env
        )
        self.procs = [*self.workers, self.scheduler]
        self.cpu_groups = {
            "rq workers": self.worker_pids,
            "scheduler": self.scheduler.pids,
            "bench": lambda: descendants(os.getpid()),
        }

    def worker_pids(self) -> list[int]:
        return [p for w in self.workers for p in w.pids()]

    def start(self, rds: redis.Redis) -> None:
        for p in self.procs:
            p.start()
        wait_workers(self.workers, rds)
        wait_scheduler(self.scheduler)


def _proc(name: str, command: list[str], env: dict[str, str]) -> Proc:
    return Proc(name, command, env, OUT_DIR / f"broadcast-{name}.log", ROOT)


def _check(report: dict[str, Any], cfg: Config, app: App, rds: redis.Redis) -> None:
    """Everyone got exactly one message, each handed over once, all recorded sent;
    no failed RQ job; nobody exited."""
    from rq import Queue
    from rq.registry import FailedJobRegistry

    send = report["send"]
    by_status = send["finished"]["messages_by_status"]
    if send["handed_over_twice"]:
        report["problems"].append(
            f"{send['handed_over_twice']} messages handed over twice"
        )
    if by_status.get("sent", 0) != cfg.recipients:
        report["problems"].append(
            f"{by_status.get('sent', 0):,} of {cfg.recipients:,} messages recorded "
            f"sent: {by_status}"
        )
    if send["finished"]["campaign_status"] != "sent":
        report["problems"].append(
            f"the campaign is {send['finished']['campaign_status']}, not sent"
        )
    failed = sum(
        FailedJobRegistry(queue=Queue(name, connection=rds)).count for name in QUEUES
    )
    if failed:
        report["problems"].append(
            f"RQ: {failed} jobs failed (see bench/out/broadcast-*.log)"
        )
    for p in app.procs:
        if not p.alive():
            report["problems"].append(f"{p.name} exited early:\n{p.tail(10)}")
