"""The retention run: each kind of data in turn, a batch at a time, recorded in a
RetentionRun; and the scheduler tick task that starts one a day.

A batch is one short transaction that deletes its rows and adds them to the run's
counts together, so a worker killed halfway loses no count and leaves nothing half
done. An error in one kind is recorded and the other kinds still run; what it left
is deleted by the next run, as is what a run that ran out of time left (the next
tick starts that one at once).
"""

import datetime as dt
import logging
import time
import traceback

from django.conf import settings
from django.db import transaction

from apps.core import clock, jobs

from ..models import RetentionRun
from .kinds import KINDS, Kind

logger = logging.getLogger(__name__)

# A day between runs: each deletes what passed its time since the last one.
RUN_EVERY = dt.timedelta(days=1)
# The queue the workers take last: deleting old rows waits for everything else.
QUEUE = "default"
# One job at a time: a tick that finds it already waiting or running adds nothing.
JOB_ID = "privacy-retention"
# How often a long kind says how far it got.
LOG_EVERY_SECONDS = 10


class _OutOfTime(Exception):
    pass


def retention_run(*, budget_seconds: float | None = None) -> RetentionRun:
    """Delete what each kind keeps no longer, as a RetentionRun; stop between two
    batches once ``budget_seconds`` (default: half the job timeout, so RQ never
    kills it mid-batch) have passed, as a PARTIAL run."""
    if budget_seconds is None:
        budget_seconds = settings.RQ_QUEUES[QUEUE]["DEFAULT_TIMEOUT"] / 2
    deadline = time.monotonic() + budget_seconds
    now = clock.now()
    _interrupted_runs_close(now)
    run = RetentionRun.objects.create(started_at=now)
    errors = []
    try:
        for kind in KINDS:
            days = getattr(settings, kind.setting)
            if days <= 0:  # kept for ever
                continue
            try:
                _kind_purge(run, kind, now - dt.timedelta(days=days), deadline)
            except (*jobs.JOB_INTERRUPTIONS, _OutOfTime):
                raise
            except Exception:
                logger.exception("retention of %s failed", kind.name)
                errors.append(f"{kind.name}:\n{traceback.format_exc()}")
        status = RetentionRun.Status.FAILED if errors else RetentionRun.Status.DONE
    except _OutOfTime:
        status = RetentionRun.Status.PARTIAL
    run.status, run.error, run.finished_at = status, "\n".join(errors), clock.now()
    run.save(update_fields=["status", "error", "finished_at"])
    logger.info(
        "retention run %s", run.status, extra={"run_id": run.pk, "deleted": run.deleted}
    )
    return run


def _kind_purge(
    run: RetentionRun, kind: Kind, cutoff: dt.datetime, deadline: float
) -> None:
    total, started = 0, time.monotonic()
    said_at = started
    if kind.before is not None and (total := kind.before(cutoff)):
        run.deleted[kind.name] = run.deleted.get(kind.name, 0) + total
        RetentionRun.objects.filter(pk=run.pk).update(deleted=run.deleted)
    for ids in kind.batches(cutoff):
        with transaction.atomic():
            deleted = kind.delete(ids, cutoff)
            total += deleted
            run.deleted[kind.name] = run.deleted.get(kind.name, 0) + deleted
            RetentionRun.objects.filter(pk=run.pk).update(deleted=run.deleted)
        if time.monotonic() - said_at > LOG_EVERY_SECONDS:
            said_at = time.monotonic()
            logger.info("retention of %s: %s deleted so far", kind.name, total)
        if time.monotonic() > deadline:
            logger.info("retention of %s: out of time after %s", kind.name, total)
            raise _OutOfTime
    logger.info(
        "retention of %s: %s deleted in %.1f s",
        kind.name,
        total,
        time.monotonic() - started,
        extra={"older_than": cutoff.isoformat()},
    )


def _interrupted_runs_close(now: dt.datetime) -> None:
    """A run still RUNNING when the next starts lost its worker (killed, or its job
    timed out): it says so. Its deletes and counts were committed batch by batch."""
    RetentionRun.objects.filter(status=RetentionRun.Status.RUNNING).update(
        status=RetentionRun.Status.FAILED,
        finished_at=now,
        error="stopped before it finished: its worker died or its job timed out",
    )


def retention_due(*, now: dt.datetime) -> int:
    """Tick task: enqueue the retention job when a run is due; 1 if it did.

    Due a day after the last run started; at once after one that ran out of time;
    and after one still running past its job's timeout (its worker died: RQ would
    have ended it by then). Until the job starts, each tick's enqueue is a no-op
    (the stable job id); if Redis loses it, a later tick enqueues it again."""
    from .jobs import run_retention

    last = RetentionRun.objects.order_by("-started_at", "-pk").first()
    if last is not None and not _next_run_due(last, now):
        return 0
    jobs.enqueue(run_retention, queue=QUEUE, job_id=JOB_ID)
    return 1


def _next_run_due(last: RetentionRun, now: dt.datetime) -> bool:
    if last.status == RetentionRun.Status.PARTIAL:
        return True
    if last.status == RetentionRun.Status.RUNNING:
        timeout = settings.RQ_QUEUES[QUEUE]["DEFAULT_TIMEOUT"]
        dead_after = dt.timedelta(seconds=timeout + jobs.DEATH_MARGIN_SECONDS)
        return last.started_at < now - dead_after
    return last.started_at <= now - RUN_EVERY
