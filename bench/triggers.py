#!/usr/bin/env python
"""Time-trigger benchmark: a schedule over many contacts while ingestion runs.

What it does, in order (see bench/README.md for how to run it):

1. Drops and recreates its own PostgreSQL database (``nudge_bench_triggers``) and
   flushes its own Redis db (``/12``), runs ``migrate`` in this process and creates
   a server source, N contacts (200,000; --small 5,000) and a schedule-triggered
   workflow (draft) whose one step waits a day.
2. Starts the real processes, each in its own process group, all stopped at the end:
   granian (WSGI, 2 workers), 2 RQ ``SimpleWorker``s and one ``nudge_scheduler``.
3. Baseline: ``track`` calls offered open loop at a steady rate (over real HTTP, from
   a process of its own) with nothing else going on: their HTTP latency, and how long
   each event waited to be processed (received -> processed).
4. Enumeration: the workflow's schedule is set to fire this minute and it is
   activated; the same load runs while the scheduler's tick starts the run and the
   workers enroll every contact a chunk at a time. The same figures, the time the
   run took to enroll everyone (and until every enrollment reached its wait), and a
   check that each contact was enrolled exactly once.
5. Prints the figures beside the baseline and writes bench/out/triggers.json.

Exit status: 0 whenever the run completed (a slower figure is a measurement, not a
failure), 1 if something broke (a contact enrolled twice or not at all, failed RQ
jobs, HTTP errors, the run did not finish in time), 2 if set-up failed, 130 on
Ctrl-C.
"""

from __future__ import annotations

import sys

from benchcommon.errors import bench_main
from triggersbench.config import parse_args
from triggersbench.report import print_table
from triggersbench.run import run


def main(argv: list[str] | None = None) -> int:
    return bench_main(parse_args(argv), run, print_table)


if __name__ == "__main__":
    sys.exit(main())
