"""Moves this process's wall clock by NUDGE_TEST_CLOCK_SHIFT_DAYS (time-machine), so
that the whole suite can be run as if it were another date: a test that depends on the
real date then fails on every machine, not only after some day in the future.

tests/fixtures.py starts the same shift in the pytest process and puts this folder on
PYTHONPATH, so processes the tests start (RQ workers, the scheduler) run shifted too.
Monotonic clocks are left alone: timeouts and waits keep working.
"""

import os


def shift_clock() -> None:
    days = os.environ.get("NUDGE_TEST_CLOCK_SHIFT_DAYS")
    if not days:
        return
    import datetime as dt

    import time_machine

    destination = dt.datetime.now(dt.UTC) + dt.timedelta(days=float(days))
    time_machine.travel(destination, tick=True).start()


shift_clock()
