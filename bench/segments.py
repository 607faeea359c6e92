#!/usr/bin/env python
"""Behavioural segment benchmark: count, full refresh and the incremental path.

What it does, in order (see bench/README.md for how to run it):

1. Drops and recreates its own PostgreSQL database (``nudge_bench_segments``) and
   flushes its own Redis db (``/10``), then runs ``migrate`` in this process (Django is
   set up here: the code measured is Python called in-process, there is no server).
2. Loads N contacts and M events with COPY (psycopg 3 ``cursor.copy``). Secondary
   indexes and foreign keys of the two tables are dropped for the load and rebuilt
   exactly as they were (checked), then the tables are ANALYZEd and a CHECKPOINT is
   taken. Events come in sessions of a skewed population of contacts over the last
   60 days, time-ordered on disk like an append-only table.
3. Measures, with ``now`` fixed, each a few runs (best and median):
   (a) ``count_matching`` of "viewed a product at least 3 times in 7 days and no
       purchase in 24 hours", beside a hand-written SQL query for the same answer
       (the baseline); both counts must agree; EXPLAIN (ANALYZE, BUFFERS) of both;
   (b) ``segment_refresh_full`` of a new segment with that condition, then again with
       nothing changed;
   (c) ``segment_update_for_contacts`` for one incoming event: for each of 200 random
       contacts one product_viewed event is inserted and the call timed; then the
       memberships must equal what the SQL says.
4. Prints a table against the targets in DESIGN.md and writes bench/out/segments.json.

Exit status: 0 whenever the run completed (a MISS is a measurement, not a failure),
1 if something broke (counts disagree, memberships wrong), 2 if set-up failed,
130 on Ctrl-C.
"""

from __future__ import annotations

import sys

from benchcommon.errors import bench_main
from segmentsbench.config import parse_args
from segmentsbench.report import print_plans, print_table
from segmentsbench.run import run


def main(argv: list[str] | None = None) -> int:
    return bench_main(parse_args(argv), run, print_plans, print_table)


if __name__ == "__main__":
    sys.exit(main())
