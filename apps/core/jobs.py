"""The one way Nudge enqueues background work.

Jobs carry ids, never model instances. Enqueueing happens after the surrounding
transaction commits, so a worker never looks for rows that are not there yet, and a
rolled-back request enqueues nothing. A stable ``job_id`` turns a duplicate enqueue
(the original plus a scheduler tick re-enqueue, say) into a no-op while the first is
still waiting.

Redis only wakes workers: every job here corresponds to a row in PostgreSQL that the
scheduler tick finds again if Redis loses the job.
"""

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import django_rq
from django.conf import settings
from django.db import transaction
from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.timeouts import JobTimeoutException
from rq.utils import now as rq_now

logger = logging.getLogger(__name__)

# Three retries, 10 s, 1 min and 5 min apart: long enough to ride out a database
# failover or an ESP hiccup, short enough that a marketer never notices.
DEFAULT_RETRY = Retry(max=3, interval=[10, 60, 300])

# Raised inside a job to end it, not to report a failure of the work it holds: RQ's
# death penalty raises JobTimeoutException wherever a SimpleWorker's job is when its
# timeout passes. It is an Exception, so an `except Exception` that records failures
# must let it through first, or the job runs on with no timeout left.
JOB_INTERRUPTIONS = (JobTimeoutException,)

# A job still waiting (or running) with the same id means the work is already in hand.
# After its timeout, how long a started job is given to be ended by RQ's death
# penalty before it counts as dead.
DEATH_MARGIN_SECONDS = 10
_LIVE_STATUSES = {
    JobStatus.QUEUED,
    JobStatus.STARTED,
    JobStatus.SCHEDULED,
    JobStatus.DEFERRED,
}


def enqueue(
    func: Callable[..., Any],
    *args: Any,
    queue: str = "default",
    job_id: str | None = None,
    at: dt.datetime | None = None,
    retry: Retry | None = DEFAULT_RETRY,
    on_commit: bool = True,
) -> None:
    """Enqueue ``func(*args)`` on ``queue`` once the current transaction commits.

    ``at`` schedules it for later through RQ's scheduler. With ``job_id`` a job that is
    already waiting or running under that id is left alone.
    """

    def _enqueue() -> None:
        try:
            _enqueue_now(func, args, queue=queue, job_id=job_id, at=at, retry=retry)
        except RedisError as exc:
            _unqueued(func, 1, queue, exc)

    if on_commit:
        transaction.on_commit(_enqueue)
    else:
        _enqueue()


def withdraw(job_id: str, *, queue: str) -> None:
    """Take job ``job_id`` off ``queue`` once the current transaction commits, if it
    is still waiting there; one a worker has taken already runs. Best effort: the
    job must be harmless if it runs anyway."""

    def _withdraw() -> None:
        try:
            rq_queue = get_queue(queue)
            # Off the queue first: a worker popping it at the same moment gets it
            # whole (and the removal finds nothing), never a job without its hash.
            if rq_queue.remove(job_id):
                Job.fetch(job_id, connection=rq_queue.connection).delete(
                    remove_from_queue=False
                )
        except (RedisError, NoSuchJobError) as exc:
            logger.debug("job %s not withdrawn from %s (%s)", job_id, queue, exc)

    transaction.on_commit(_withdraw)


def take_waiting(
    func: Callable[..., Any], *, queue: str, limit: int
) -> list[tuple[Any, ...]]:
    """The arguments of up to ``limit`` jobs of ``func`` still waiting on ``queue``
    (among its first ``limit``), taken off it for the calling job to do their work
    with its own: under load one job does the work of many, for a fraction of their
    cost (a batch of events costs little more than one event).

    Each is taken off the queue before its hash is deleted (LREM is atomic): a
    worker that popped it at the same moment gets it whole, and this job does not.
    A job that dies after taking some loses nothing: the rows they point at are in
    PostgreSQL, where the tick finds them again as it finds any lost job's. Best
    effort: a Redis error takes nothing."""
    name = f"{func.__module__}.{func.__qualname__}"
    taken: list[tuple[Any, ...]] = []
    try:
        rq_queue = get_queue(queue)
        waiting = Job.fetch_many(
            rq_queue.get_job_ids(0, limit), connection=rq_queue.connection
        )
        for job in waiting:
            if job is None or job.func_name != name or not rq_queue.remove(job.id):
                continue
            taken.append(tuple(job.args))
            job.delete(remove_from_queue=False)
    except RedisError as exc:
        logger.warning("could not take waiting %s jobs from %s (%s)", name, queue, exc)
    return taken


_queues: dict[str, Any] = {}


def get_queue(name: str):
    """One RQ Queue (and so one Redis connection pool) per queue name per process:
    django_rq.get_queue builds a new pool on every call, ~2 ms each (bench/engine.py)."""
    queue = _queues.get(name)
    if queue is None:
        queue = _queues[name] = django_rq.get_queue(name)
    return queue


def forget_connections(*, setting: str, **_kwargs) -> None:
    """setting_changed receiver: a test that points RQ at another Redis gets new
    queues and connections, not the cached ones to the old server."""
    from .redis import redis_connection

    if setting in ("RQ_QUEUES", "REDIS_URL"):
        _queues.clear()
        redis_connection.cache_clear()


def enqueue_each(
    func: Callable[..., Any],
    args_each: list[tuple[Any, ...]],
    *,
    queue: str = "default",
    retry: Retry | None = DEFAULT_RETRY,
) -> None:
    """A job ``func(*args)`` for each of ``args_each``, all in one Redis round trip,
    now: call it once what they point at is committed."""
    if not args_each:
        return
    try:
        _enqueue_pipelined(get_queue(queue), func, args_each, retry)
    except RedisError as exc:
        _unqueued(func, len(args_each), queue, exc)


def _unqueued(func: Callable[..., Any], count: int, queue: str, exc: Exception) -> None:
    # The rows are already committed; the scheduler tick will find them again.
    logger.warning(
        "could not enqueue %s x%s on %s (%s); the scheduler tick will retry it",
        getattr(func, "__name__", func),
        count,
        queue,
        exc,
    )


def _enqueue_pipelined(
    rq_queue: Any,
    func: Callable[..., Any],
    args_each: list[tuple[Any, ...]],
    retry: Retry | None,
) -> None:
    # One round trip (enqueue_many's own pipeline): enqueueing each job by itself,
    # RQ sends the queue's registration and each job separately, which costs ~100 us
    # more CPU a job (~320 against ~225 us); enqueue_many also registers the queue
    # once for all the jobs (~10 us less a job). It is RQ's own method, past
    # django-rq's enqueue_call and its commit modes: fine while RQ["COMMIT_MODE"] is
    # "auto" (config/settings.py), as we enqueue after the commit ourselves.
    options = _options(None, retry)
    rq_queue.enqueue_many(
        [Queue.prepare_data(func, args=args, **options) for args in args_each]
    )


def _options(job_id: str | None, retry: Retry | None) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "retry": retry,
        # Results are never read; dropping the hash at once also frees the job id.
        "result_ttl": 0,
        "failure_ttl": 7 * 24 * 3600,
    }


def _enqueue_now(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    *,
    queue: str,
    job_id: str | None,
    at: dt.datetime | None,
    retry: Retry | None,
) -> None:
    rq_queue = get_queue(queue)
    if at is None and job_id is None:
        _enqueue_pipelined(rq_queue, func, [args], retry)
        return
    options = _options(job_id, retry)
    for _attempt in range(2):
        try:
            if at is not None:
                rq_queue.enqueue_at(at, func, *args, **options)
            else:
                rq_queue.enqueue(func, *args, unique=True, **options)
            return
        except DuplicateJobError:
            if not _discard_dead_job(job_id, rq_queue.connection):
                logger.debug("job %s already in hand, not enqueued again", job_id)
                return


def _discard_dead_job(job_id: str | None, connection: Any) -> bool:
    """Delete a job that holds ``job_id`` but will never run again: finished,
    failed, or started longer ago than its timeout (its worker was killed: a live
    one would have ended it by then, and RQ notices only at its next registry
    clean-up, minutes later); True if it did. Until then a message or an event
    whose worker died before it claimed the work could not be enqueued again."""
    try:
        job = Job.fetch(job_id, connection=connection)
    except NoSuchJobError:
        return True
    status = job.get_status(refresh=False)
    if status in _LIVE_STATUSES and not (
        (status == JobStatus.STARTED and _outlived_its_timeout(job))
        or _orphaned(job, status, connection)
    ):
        return False
    job.delete()
    return True


def _orphaned(job: Job, status: str, connection: Any) -> bool:
    """A job that says it waits but is on no list or registry that would run it:
    a worker popped it off its queue and was killed before marking it started,
    or its scheduled entry went. Nothing will ever run it."""
    if status == JobStatus.QUEUED:
        key = f"rq:queue:{job.origin}"
        return connection.execute_command("LPOS", key, job.id) is None
    if status == JobStatus.SCHEDULED:
        key = f"rq:scheduled:{job.origin}"
        return connection.zscore(key, job.id) is None
    return False


def _outlived_its_timeout(job: Job) -> bool:
    started = job.started_at
    if started is None:
        return False
    if started.tzinfo is None:
        started = started.replace(tzinfo=dt.UTC)
    timeout = job.timeout or settings.RQ_QUEUES["default"]["DEFAULT_TIMEOUT"]
    # RQ's clock (the real one), as RQ stamped started_at with it
    return rq_now() - started > dt.timedelta(seconds=timeout + DEATH_MARGIN_SECONDS)
