"""The scheduler tick: re-enqueue every piece of due work that is not in flight.

PostgreSQL is the source of truth; Redis only wakes workers. Each app registers a tick
task that finds its due rows (unprocessed events, due enrollments, queued messages) and
enqueues them again with stable job ids, so a flushed Redis, a killed worker or a lost
on_commit delays work by one tick and loses none. One tick runs at a time across the
cluster: on PostgreSQL an advisory lock decides; SQLite is one machine and serialises
writers anyway.
"""

import logging
from collections.abc import Callable

from django.db import connection, transaction

from . import clock

logger = logging.getLogger(__name__)

# pg advisory lock key: "nudge" in ASCII, so it is recognisable in pg_locks.
TICK_LOCK_KEY = 0x6E75646765

TickTask = Callable[..., int]
_tasks: dict[str, TickTask] = {}


def register_tick_task(name: str, task: TickTask) -> None:
    """``task(*, now) -> int`` (how many things it re-enqueued or did)."""
    _tasks[name] = task


def tick() -> dict[str, int] | None:
    """Run every tick task once; None if another scheduler holds the lock."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [TICK_LOCK_KEY])
                if not cursor.fetchone()[0]:
                    return None
        now = clock.now()
        results = {}
        for name, task in _tasks.items():
            try:
                with transaction.atomic():
                    results[name] = task(now=now)
            except Exception:
                # One broken task must not stop the others from running.
                logger.exception("tick task %s failed", name)
                results[name] = -1
        return results
