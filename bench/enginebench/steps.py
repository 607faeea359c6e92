"""(b) enrollment steps/s with the RQ workers."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import redis
from benchcommon.databases import db_name
from benchcommon.errors import BenchBroken
from benchcommon.report import log

from enginebench.config import STEPS_PER_ENROLLMENT, Config
from enginebench.cpu import CpuWatch, fmt_cpu, wait_quiet
from enginebench.procs import (
    idle,
    queue_state,
    stats_delta,
    wait_for_finished_jobs,
    worker_stats,
)
from enginebench.setup import Data

# -- (b) enrollment steps/s ------------------------------------------------------------


def enroll(workflow_id: int, count: int, offset: int = 0) -> tuple[list[int], float]:
    """``count`` enrollments of engine contacts, not advanced; committed at once
    (with last_advanced_at bumped), so the scheduler tick never sees them stale
    before they are enqueued. Returns the ids and the seconds it took."""
    from django.db import transaction
    from django.db.models.functions import Now

    from apps.contacts.models import Contact
    from apps.workflows.models import Enrollment, Workflow
    from apps.workflows.services import enrollment_start

    workflow = Workflow.objects.select_related("current_version").get(pk=workflow_id)
    contacts = list(
        Contact.objects.filter(external_id__startswith="engine-")
        .order_by("pk")
        .only("pk")[offset : offset + count]
    )
    if len(contacts) < count:
        raise BenchBroken(f"only {len(contacts)} engine contacts for {count}")
    began = time.perf_counter()
    ids = []
    with transaction.atomic():
        for contact in contacts:
            enrollment, reason = enrollment_start(
                workflow=workflow, contact=contact, advance=False
            )
            if enrollment is None:
                raise BenchBroken(f"enrollment_start refused: {reason}")
            ids.append(enrollment.pk)
        Enrollment.objects.filter(pk__in=ids).update(last_advanced_at=Now())
    return ids, time.perf_counter() - began


def enroll_bulk(workflow_id: int, count: int) -> list[int]:
    """Enrollments as enrollment_start makes them, in one INSERT (for the baseline,
    which does not measure enrolling)."""
    from django.utils import timezone

    from apps.contacts.models import Contact
    from apps.workflows.models import Enrollment, Workflow

    workflow = Workflow.objects.select_related("current_version").get(pk=workflow_id)
    version = workflow.current_version
    first = version.steps.order_by("position").first()
    now = timezone.now()
    contact_ids = (
        Contact.objects.filter(external_id__startswith="engine-")
        .order_by("pk")
        .values_list("pk", flat=True)[:count]
    )
    rows = Enrollment.objects.bulk_create(
        Enrollment(
            workflow=workflow,
            version=version,
            contact_id=contact_id,
            current_step=first,
            entered_at=now,
            last_advanced_at=now,
        )
        for contact_id in contact_ids
    )
    return [r.pk for r in rows]


@dataclass
class Advanced:
    """How (b)'s enrollments went through the workers."""

    left: int  # enrollments still running when the wait gave up
    stuck_after: float  # seconds without progress before it gives up
    t0: float  # time.time() just before enqueue_advance
    enqueued_s: float
    seen_done: float  # time.time() when none were left running
    rq_jobs: dict[str, Any]
    cpu: dict[str, Any]


def phase_engine(
    cfg: Config,
    data: Data,
    rds: redis.Redis,
    cpu_groups: dict[str, Any],
    quiet: dict[str, Any],
    names: list[str],
) -> dict[str, Any]:
    problems: list[str] = []
    ids, create_s = _create_enrollments(cfg, data, rds, cpu_groups, quiet, problems)
    run = _advance_with_workers(cfg, data, rds, cpu_groups, names, ids)
    log("  " + fmt_cpu(run.cpu))
    if run.left:
        problems.append(
            f"(b) {run.left} of {len(ids)} enrollments still running after no "
            f"progress for {run.stuck_after:g} s; queues {queue_state(rds)}"
        )
    return _engine_report(data, ids, create_s, run, problems)


def _create_enrollments(
    cfg: Config,
    data: Data,
    rds: redis.Redis,
    cpu_groups: dict[str, Any],
    quiet: dict[str, Any],
    problems: list[str],
) -> tuple[list[int], float]:
    """(b)'s enrollments, then the wait for a quiet machine and idle queues."""
    log(f"(b) creating {cfg.enrollments:,} enrollments (enrollment_start, no advance)")
    ids, create_s = enroll(data.engine_workflow_id, cfg.enrollments)
    log(f"  {len(ids) / create_s:,.0f} enrollment_start/s (one process)")
    quiet["engine"] = wait_quiet(cfg, cpu_groups, "(b)")
    state = queue_state(rds)
    if not idle(state):
        problems.append(f"(b) started with busy queues: {state}")
    return ids, create_s


def _advance_with_workers(
    cfg: Config,
    data: Data,
    rds: redis.Redis,
    cpu_groups: dict[str, Any],
    names: list[str],
    ids: list[int],
) -> Advanced:
    """enqueue_advance the enrollments, then wait until none is running (or none
    has moved for a while)."""
    from django.db.models.functions import Now

    from apps.workflows.models import Enrollment
    from apps.workflows.services import enqueue_advance

    running = Enrollment.objects.filter(
        workflow_id=data.engine_workflow_id, status__in=Enrollment.RUNNING
    )
    log(
        f"  enqueue_advance: {math.ceil(len(ids) / 200)} jobs of 200, "
        f"{cfg.rq_workers} workers"
    )
    # Fresh, so that the tick's "stale after 30 s" clock starts now, as it would for
    # enrollments an events job just made.
    Enrollment.objects.filter(pk__in=ids).update(last_advanced_at=Now())
    stuck_after = 20.0
    stats0 = worker_stats(rds, names)
    with CpuWatch(cpu_groups, db_name(cfg.database_url)) as cpu:
        t0 = time.time()
        enqueue_advance(ids)
        enqueued_s = time.time() - t0
        left, last_change, last_left = len(ids), time.monotonic(), len(ids)
        while left:
            time.sleep(0.025)
            left = running.count()
            if left != last_left:
                last_change, last_left = time.monotonic(), left
            elif time.monotonic() - last_change > stuck_after:
                break
        seen_done = time.time()
    wait_for_finished_jobs(rds)  # their counters are written after they return
    rq_jobs = stats_delta(stats0, worker_stats(rds, names), seen_done - t0)
    return Advanced(left, stuck_after, t0, enqueued_s, seen_done, rq_jobs, cpu.report)


def _engine_report(
    data: Data, ids: list[int], create_s: float, run: Advanced, problems: list[str]
) -> dict[str, Any]:
    """The step rows' figures and their checks; elapsed is to the last step run."""
    from django.db.models import Count, Max

    from apps.workflows.models import Enrollment, StepRun

    runs = StepRun.objects.filter(enrollment__workflow_id=data.engine_workflow_id)
    steps = runs.count()
    last = runs.aggregate(t=Max("finished_at"))["t"]
    elapsed = (last.timestamp() if last else run.seen_done) - run.t0
    statuses = dict(
        Enrollment.objects.filter(workflow_id=data.engine_workflow_id)
        .values_list("status")
        .annotate(n=Count("pk"))
    )
    if statuses.get("failed"):
        problems.append(f"(b) {statuses['failed']} enrollments failed")
    if not run.left and steps != STEPS_PER_ENROLLMENT * len(ids):
        problems.append(
            f"(b) {steps} step runs for {len(ids)} enrollments "
            f"({STEPS_PER_ENROLLMENT} each expected)"
        )
    cpu = run.cpu
    report = {
        "enrollments": len(ids),
        "steps": steps,
        "seconds": round(elapsed, 3),
        "steps_per_s": round(steps / elapsed) if elapsed > 0 else None,
        "enrollments_per_s": round(len(ids) / elapsed) if elapsed > 0 else None,
        "enqueue_seconds": round(run.enqueued_s, 3),
        "seconds_until_seen_done": round(run.seen_done - run.t0, 3),
        "statuses": statuses,
        "enrollment_start_per_s": round(len(ids) / create_s),
        "jobs_expected": math.ceil(len(ids) / 200),
        "rq": run.rq_jobs,
        "worker_cpu_ms_per_enrollment": round(
            1000 * cpu["rq workers"] * cpu["wall_s"] / len(ids), 2
        ),
        "postgres_cpu_ms_per_enrollment": round(
            1000 * cpu["postgres"] * cpu["wall_s"] / len(ids), 2
        ),
        "cpu": cpu,
    }
    log(
        f"  {report['steps_per_s']:,} steps/s ({steps:,} steps, "
        f"{report['enrollments_per_s']:,} enrollments/s, {elapsed:.2f} s)"
    )
    report["problems"] = problems
    return report
