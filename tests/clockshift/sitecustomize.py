"""Moves this process's wall clock by NUDGE_TEST_CLOCK_SHIFT_DAYS (time-machine), so
that the whole suite can be run as if it were another date: a test that depends on the
real date then fails on every machine, not only after some day in the future.

tests/fixtures.py starts the same shift in the pytest process and puts this folder on
PYTHONPATH, so processes the tests start (RQ workers, the scheduler) run shifted too.
Monotonic clocks are left alone: timeouts and waits keep working.
"""

import os
import sys


def shift_clock() -> None:
    """Once per process: a second call (this module imported by name after it ran
    as sitecustomize, or imported and then called) must not move the clock again,
    or this process would be a year ahead of the workers it starts. The mark is on
    ``sys``, which both names of this module share (not in the environment, which
    the processes it starts inherit)."""
    days = os.environ.get("NUDGE_TEST_CLOCK_SHIFT_DAYS")
    if not days or getattr(sys, "nudge_clock_shifted", False):
        return
    import datetime as dt

    import time_machine

    destination = dt.datetime.now(dt.UTC) + dt.timedelta(days=float(days))
    time_machine.travel(destination, tick=True).start()
    sys.nudge_clock_shifted = True


shift_clock()
