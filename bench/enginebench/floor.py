"""(b)'s baseline: the same rows written with plain SQL, one transaction per
enrollment."""

from __future__ import annotations

import multiprocessing
import signal
from typing import Any

import psycopg
from benchcommon.databases import db_name
from benchcommon.report import log

# The baseline: the same rows, written with plain SQL, one transaction per enrollment.
from enginebench.config import Config
from enginebench.cpu import CpuWatch
from enginebench.setup import Data
from enginebench.steps import enroll_bulk

FLOOR_LOCK = (
    "SELECT e.id, e.contact_id, c.attributes FROM workflows_enrollment e"
    " JOIN contacts_contact c ON c.id = e.contact_id"
    " WHERE e.id = %s AND e.status IN ('active', 'waiting')"
    " FOR UPDATE OF e SKIP LOCKED"
)
FLOOR_STEP = (
    "INSERT INTO workflows_steprun (enrollment_id, step_id, step_key, started_at,"
    " finished_at, outcome, detail) VALUES (%s, %s, %s, now(), clock_timestamp(),"
    " %s, %s)"
)
FLOOR_CONTACT = "UPDATE contacts_contact SET attributes = %s WHERE id = %s"
FLOOR_FINISH = (
    "UPDATE workflows_enrollment SET status = 'exited', finished_at = now(),"
    " exit_reason = 'bench', current_step_id = %s, last_advanced_at = now()"
    " WHERE id = %s"
)


def floor_main(
    url: str, chunks: list[list[int]], steps: list[tuple], out: Any, release: Any
) -> None:
    """One baseline process: per enrollment, lock it (with its contact), insert a
    step run per step, update the contact once and finish the enrollment; commit.
    Waits for ``release`` before it ends, so that its CPU (and its PostgreSQL
    backend's) is counted while both still exist."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from psycopg.types.json import Jsonb

    done = 0
    with psycopg.connect(url) as conn:
        for chunk in chunks:
            for enrollment_id in chunk:
                with conn.transaction():
                    row = conn.execute(FLOOR_LOCK, (enrollment_id,)).fetchone()
                    if row is None:
                        continue
                    attributes = {**(row[2] or {}), "bench_seen": True}
                    for step_id, key, kind, outcome in steps:
                        if kind == "update_contact":
                            conn.execute(FLOOR_CONTACT, (Jsonb(attributes), row[1]))
                        detail = {"reason": f"{kind} {outcome}", "step": key}
                        conn.execute(
                            FLOOR_STEP,
                            (enrollment_id, step_id, key, outcome, Jsonb(detail)),
                        )
                    conn.execute(FLOOR_FINISH, (steps[-1][0], enrollment_id))
                    done += 1
        out.put(done)
        release.wait(60)


def phase_floor(
    cfg: Config, data: Data, cpu_groups: dict[str, Any], floor_pids: list[int]
) -> dict[str, Any]:
    log(
        f"(b) baseline: {cfg.enrollments:,} enrollments, the same rows in plain SQL, "
        f"one transaction each, {cfg.rq_workers} processes"
    )
    ids = enroll_bulk(data.floor_workflow_id, cfg.enrollments)
    steps = _floor_steps(data.floor_workflow_id)
    done, cpu = _run_floor_processes(cfg, ids, steps, cpu_groups, floor_pids)
    return _floor_report(data, done, cpu)


def _floor_steps(workflow_id: int) -> list[tuple[int, str, str, str]]:
    """(pk, key, type, outcome) of the workflow's steps, in order."""
    from apps.workflows.models import Step, Workflow

    workflow = Workflow.objects.get(pk=workflow_id)
    return [
        (s.pk, s.key, s.type, {"branch": "yes", "split": "A"}.get(s.type, "ok"))
        for s in Step.objects.filter(version_id=workflow.current_version_id).order_by(
            "position"
        )
    ]


def _run_floor_processes(
    cfg: Config,
    ids: list[int],
    steps: list[tuple[int, str, str, str]],
    cpu_groups: dict[str, Any],
    floor_pids: list[int],
) -> tuple[int, dict[str, Any]]:
    """The enrollments in chunks of 200, over one process per RQ worker; returns
    how many were done and the CPU report."""
    chunks = [ids[i : i + 200] for i in range(0, len(ids), 200)]
    n = max(1, cfg.rq_workers)
    ctx = multiprocessing.get_context("spawn")
    out, release = ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(
            target=floor_main,
            args=(cfg.database_url, chunks[k::n], steps, out, release),
            daemon=True,
        )
        for k in range(n)
    ]
    # Spawning takes a second: the time counts from the first step row written to
    # the last (the rows' own timestamps), not from the start of the processes.
    with CpuWatch(cpu_groups, db_name(cfg.database_url)) as cpu:
        for p in procs:
            p.start()
            floor_pids.append(p.pid)
        done = sum(out.get(timeout=600) for _ in procs)
    release.set()
    for p in procs:
        p.join(10)
    return done, cpu.report


def _floor_report(data: Data, done: int, cpu: dict[str, Any]) -> dict[str, Any]:
    """The figures from the step rows' own timestamps."""
    from django.db.models import Max, Min

    from apps.workflows.models import Enrollment, StepRun

    runs = StepRun.objects.filter(enrollment__workflow_id=data.floor_workflow_id)
    span = runs.aggregate(a=Min("started_at"), b=Max("finished_at"))
    elapsed = (span["b"] - span["a"]).total_seconds() if span["a"] else float("nan")
    steps_done = runs.count()
    left = Enrollment.objects.filter(
        workflow_id=data.floor_workflow_id, status__in=Enrollment.RUNNING
    ).count()
    report = {
        "enrollments": done,
        "steps": steps_done,
        "seconds": round(elapsed, 3),
        "steps_per_s": round(steps_done / elapsed) if elapsed > 0 else None,
        "left_running": left,
        # Per enrollment, from the phase's CPU (the clients' includes starting
        # Python: about 0.3 s per process).
        "client_cpu_ms_per_enrollment": round(
            1000 * cpu["sql floor"] * cpu["wall_s"] / max(done, 1), 2
        ),
        "postgres_cpu_ms_per_enrollment": round(
            1000 * cpu["postgres"] * cpu["wall_s"] / max(done, 1), 2
        ),
        "cpu": cpu,
    }
    log(f"  {report['steps_per_s']:,} steps/s ({steps_done:,} steps, {elapsed:.2f} s)")
    return report
